//! Criterion bench of building a capture file's index (`index::build_file`, what the indexer
//! runs on every file) beside reading the same file without indexing it
//! (`pcap::CaptureFile`, the floor no index build can beat), on the bulk trace, in one run.
//! Throughput is bytes of capture per second on one core: the target is 1 GB/s. Each
//! closure checks its result, so a broken bench fails instead of looking fast.

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use docket::pcap::CaptureFile;

fn bulk() -> PathBuf {
    let base = std::env::var("DOCKET_PCAPS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/pcaps"));
    base.join("bulk/mix-19-real-captures-10min.pcap")
}

fn indexing(c: &mut Criterion) {
    let plain = bulk();
    let size = std::fs::metadata(&plain).expect("the team corpus").len();
    let read = || {
        let mut f = CaptureFile::open(&plain).expect("opens");
        let mut n = 0u32;
        while let Some(p) = f.next_packet() {
            p.expect("valid capture");
            n += 1;
        }
        n
    };
    let want = read();
    let mut g = c.benchmark_group("indexing");
    g.throughput(Throughput::Bytes(size));
    g.sample_size(10);
    g.bench_function("read only", |b| b.iter(|| assert_eq!(read(), want)));
    g.bench_function("build index", |b| {
        b.iter(|| {
            let (index, _) = docket::index::build_file(&plain).expect("indexable");
            assert_eq!(index.records(), want);
        });
    });
    g.finish();
}

criterion_group!(benches, indexing);
criterion_main!(benches);
