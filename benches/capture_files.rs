//! Criterion bench of reading capture files from disk (`pcap::CaptureFile`, as the local
//! backend does): the bulk trace plain and compressed by the real tools (`gzip`, `lz4`,
//! `zstd`, default levels), in one run. Throughput is bytes of *capture* (the uncompressed
//! size) per second on one core, so the figures compare directly. Each closure checks its
//! packet count, so a broken bench fails instead of looking fast.

use std::path::{Path, PathBuf};
use std::process::Command;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use docket::pcap::CaptureFile;

fn bulk() -> PathBuf {
    let base = std::env::var("DOCKET_PCAPS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/pcaps"));
    base.join("bulk/mix-19-real-captures-10min.pcap")
}

fn count(path: &Path) -> usize {
    let mut f = CaptureFile::open(path).expect("opens");
    let mut n = 0;
    while let Some(p) = f.next_packet() {
        p.expect("valid capture");
        n += 1;
    }
    n
}

fn capture_files(c: &mut Criterion) {
    let dir = tempfile::TempDir::new().expect("a temporary directory");
    let plain = bulk();
    let size = std::fs::metadata(&plain).expect("the team corpus").len();
    let want = count(&plain);
    let mut g = c.benchmark_group("capture_file");
    g.throughput(Throughput::Bytes(size));
    g.sample_size(10);
    g.bench_function("plain", |b| b.iter(|| assert_eq!(count(&plain), want)));
    for (name, tool) in [("gzip", "gzip"), ("lz4", "lz4"), ("zstd", "zstd")] {
        let out = dir.path().join(name);
        let bytes = Command::new(tool)
            .arg("-c")
            .arg(&plain)
            .output()
            .expect("the compressor runs")
            .stdout;
        std::fs::write(&out, bytes).expect("writable");
        g.bench_function(name, |b| b.iter(|| assert_eq!(count(&out), want)));
    }
    g.finish();
}

criterion_group!(benches, capture_files);
criterion_main!(benches);
