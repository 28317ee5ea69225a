//! How the spool should write: plain `write(2)` on a thread (what `spool` does) against
//! io_uring (tokio-uring) with several writes in flight, for the job's chunk size, into a
//! fresh file on the spool's kind of file system, fsync at the end. The team map asks for
//! io_uring "where it wins"; this bench is the measurement (figures in the README).

use std::io::Write;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// What one job writes per spool chunk (`jobs::FLUSH_BYTES`).
const CHUNK: usize = 256 * 1024;
/// Bytes per iteration.
const TOTAL: usize = 64 << 20;

fn spool_write(c: &mut Criterion) {
    // On the disk a spool would use (the build's target directory, not a tmpfs /tmp), unless
    // SPOOL_BENCH_DIR says where.
    let base = std::env::var("SPOOL_BENCH_DIR")
        .or_else(|_| std::env::var("CARGO_TARGET_DIR"))
        .unwrap_or_else(|_| "target".into());
    std::fs::create_dir_all(&base).unwrap();
    let dir = tempfile::tempdir_in(base).unwrap();
    let chunk: Vec<u8> = (0..CHUNK).map(|i| i as u8).collect();
    let mut g = c.benchmark_group("spool_write");
    g.throughput(Throughput::Bytes(TOTAL as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(8));
    g.bench_function("write(2)", |b| {
        b.iter(|| {
            let path = dir.path().join("plain");
            let mut f = std::fs::File::create(&path).unwrap();
            for _ in 0..TOTAL / CHUNK {
                f.write_all(&chunk).unwrap();
            }
            f.sync_all().unwrap();
            drop(f);
            std::fs::remove_file(&path).unwrap();
        })
    });
    for in_flight in [1usize, 4] {
        g.bench_with_input(
            BenchmarkId::new("io_uring", in_flight),
            &in_flight,
            |b, &depth| {
                b.iter(|| {
                    let path = dir.path().join("uring");
                    let chunk = chunk.clone();
                    tokio_uring::start(async {
                        let f =
                            std::rc::Rc::new(tokio_uring::fs::File::create(&path).await.unwrap());
                        let mut pending = std::collections::VecDeque::new();
                        for i in 0..TOTAL / CHUNK {
                            if pending.len() == depth {
                                let h: tokio::task::JoinHandle<_> = pending.pop_front().unwrap();
                                h.await.unwrap();
                            }
                            let buf = chunk.clone();
                            let fd = std::rc::Rc::clone(&f);
                            pending.push_back(tokio_uring::spawn(async move {
                                let (r, _) = fd.write_all_at(buf, (i * CHUNK) as u64).await;
                                r.unwrap();
                            }));
                        }
                        for h in pending {
                            h.await.unwrap();
                        }
                        f.sync_all().await.unwrap();
                    });
                    std::fs::remove_file(&path).unwrap();
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, spool_write);
criterion_main!(benches);
