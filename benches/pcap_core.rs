//! Criterion benches of the pcap core: reader throughput per format (input bytes), the k-way
//! merge by number of inputs, and the writer. Inputs come from the team corpus; each measured
//! closure checks its packet count so that a broken bench fails instead of looking fast.

use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use docket::merge::KWay;
use docket::pcap::{OutputFormat, Packet, Reader, Writer};

fn corpus(rel: &str) -> Bytes {
    let base = std::env::var("DOCKET_PCAPS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/pcaps"));
    Bytes::from(std::fs::read(base.join(rel)).expect("team corpus"))
}

fn read_all(data: &Bytes) -> Vec<Packet> {
    Reader::from_bytes(data.clone())
        .map(|p| p.expect("valid capture"))
        .collect()
}

fn reader(c: &mut Criterion) {
    let mut g = c.benchmark_group("reader");
    for (name, rel) in [
        ("pcap-usec", "bulk/mix-19-real-captures-10min.pcap"),
        (
            "pcapng",
            "formats/pcapng-realistic__pcap-parser-wireshark_samples-test.pcapng",
        ),
        (
            "pcapng-sensor",
            "merge/sensor-b__tls2-streams-mod3-1.pcapng",
        ),
        (
            "pcap-nsec",
            "merge/sensor-c__tls2-streams-mod3-2-and-non-tcp.nsec.pcap",
        ),
    ] {
        let data = corpus(rel);
        let count = read_all(&data).len();
        g.throughput(Throughput::Bytes(data.len() as u64));
        // One chunk (a mapped file) and 64 KiB chunks (an HTTP body).
        for chunk in [data.len(), 64 * 1024] {
            let label = if chunk == data.len() {
                "whole"
            } else {
                "64KiB"
            };
            g.bench_with_input(BenchmarkId::new(name, label), &data, |b, data| {
                b.iter(|| {
                    let mut r = Reader::new();
                    let mut n = 0;
                    let mut pos = 0;
                    loop {
                        match r.next_packet().expect("valid capture") {
                            docket::pcap::Next::Packet(_) => n += 1,
                            docket::pcap::Next::End => break,
                            docket::pcap::Next::NeedMore => {
                                if pos == data.len() {
                                    r.finish();
                                } else {
                                    let end = (pos + chunk).min(data.len());
                                    r.push(data.slice(pos..end));
                                    pos = end;
                                }
                            }
                        }
                    }
                    assert_eq!(n, count);
                })
            });
        }
    }
    g.finish();
}

fn merge(c: &mut Criterion) {
    let data = corpus("bulk/mix-19-real-captures-10min.pcap");
    let packets = read_all(&data);
    let bytes: usize = packets.iter().map(|p| p.data.len() + 16).sum();
    let mut g = c.benchmark_group("merge");
    g.throughput(Throughput::Bytes(bytes as u64));
    for n in [2usize, 3, 8, 32] {
        // Round-robin split: every input overlaps every other in time, as sensors do.
        let mut inputs: Vec<Vec<Packet>> = vec![Vec::new(); n];
        for (i, p) in packets.iter().enumerate() {
            inputs[i % n].push(p.clone());
        }
        g.bench_with_input(BenchmarkId::from_parameter(n), &inputs, |b, inputs| {
            b.iter(|| {
                let mut k = KWay::new(inputs.len());
                let mut iters: Vec<_> = inputs.iter().map(|v| v.iter()).collect();
                for (i, it) in iters.iter_mut().enumerate() {
                    match it.next() {
                        Some(p) => k.push(i, p.clone()),
                        None => k.end(i),
                    }
                }
                let mut out = 0usize;
                while let Some((i, _p)) = k.pop() {
                    out += 1;
                    match iters[i].next() {
                        Some(p) => k.push(i, p.clone()),
                        None => k.end(i),
                    }
                }
                assert_eq!(out, packets.len());
            })
        });
    }
    g.finish();
}

fn writer(c: &mut Criterion) {
    let data = corpus("bulk/mix-19-real-captures-10min.pcap");
    let packets = read_all(&data);
    let mut g = c.benchmark_group("writer");
    g.throughput(Throughput::Bytes(data.len() as u64));
    for (name, format) in [
        (
            "pcap",
            OutputFormat::Pcap {
                link_type: 1,
                nanos: false,
            },
        ),
        ("pcapng", OutputFormat::Pcapng),
    ] {
        g.bench_function(name, |b| {
            let mut out = BytesMut::with_capacity(2 << 20);
            b.iter(|| {
                let mut w = Writer::new(format);
                let mut written = 0usize;
                for p in &packets {
                    w.write(&mut out, p).expect("writable");
                    written += 1;
                    if out.len() >= 1 << 20 {
                        out.clear();
                    }
                }
                assert_eq!(written, packets.len());
            })
        });
    }
    g.finish();
}

/// How the local backend should read a capture file (page cache warm): mapping it whole
/// versus `read(2)` into 1 MiB chunks pushed into the incremental reader. Input bytes/s.
fn local_file(c: &mut Criterion) {
    let base = std::env::var("DOCKET_PCAPS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/pcaps"));
    let path = base.join("bulk/mix-19-real-captures-10min.pcap");
    let size = std::fs::metadata(&path).expect("team corpus").len();
    let expected = read_all(&corpus("bulk/mix-19-real-captures-10min.pcap")).len();
    let mut g = c.benchmark_group("local_file");
    g.throughput(Throughput::Bytes(size));
    g.bench_function("mmap", |b| {
        b.iter(|| {
            let f = std::fs::File::open(&path).unwrap();
            // SAFETY: the corpus is read-only; nothing truncates it during the bench.
            let data = unsafe { docket::mapped::map_file(&f) }.unwrap();
            let n = Reader::from_bytes(data).filter(|p| p.is_ok()).count();
            assert_eq!(n, expected);
        })
    });
    g.bench_function("read-1MiB", |b| {
        b.iter(|| {
            use std::io::Read;
            let mut f = std::fs::File::open(&path).unwrap();
            let mut r = Reader::new();
            let mut n = 0;
            loop {
                let mut buf = BytesMut::zeroed(1 << 20);
                let got = f.read(&mut buf).unwrap();
                if got == 0 {
                    r.finish();
                } else {
                    buf.truncate(got);
                    r.push(buf.freeze());
                }
                loop {
                    match r.next_packet().unwrap() {
                        docket::pcap::Next::Packet(_) => n += 1,
                        docket::pcap::Next::NeedMore => break,
                        docket::pcap::Next::End => {
                            assert_eq!(n, expected);
                            return;
                        }
                    }
                }
            }
        })
    });
    g.finish();
}

criterion_group!(benches, reader, merge, writer, local_file);
criterion_main!(benches);
