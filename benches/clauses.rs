//! Criterion bench of the structured clauses: the encapsulation-aware matcher
//! (`pcap::Clauses`, what the local backend applies) against the libpcap BPF program it
//! replaced (`host X and port P` compiled by libpcap, run by `pcap_offline_filter`), over the
//! same packets of the bulk trace held in memory, in one run. Throughput is packets per
//! second on one core. Each closure checks its match count, and the two must agree on this
//! trace (plain Ethernet, no tunnels), so a broken bench fails instead of looking fast.

use std::net::IpAddr;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use docket::pcap::{BpfFilter, CaptureFile, Clauses, Packet};

fn bulk() -> PathBuf {
    let base = std::env::var("DOCKET_PCAPS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/pcaps"));
    base.join("bulk/mix-19-real-captures-10min.pcap")
}

fn clauses(c: &mut Criterion) {
    let mut f = CaptureFile::open(&bulk()).expect("the team corpus");
    let mut packets: Vec<Packet> = Vec::new();
    while let Some(p) = f.next_packet() {
        packets.push(p.expect("valid capture"));
        if packets.len() == 200_000 {
            break;
        }
    }
    // A selective query (the README's example host and port) and a broad one (one port).
    let host: IpAddr = "2620:1ec:c11::200".parse().expect("an address");
    let cases: [(&str, String, Clauses); 2] = [
        (
            "host+port",
            format!("host {host} and port 443"),
            Clauses::new(&[host], [], &[443], None).expect("clauses"),
        ),
        (
            "port",
            "port 443".to_owned(),
            Clauses::new(&[], [], &[443], None).expect("clauses"),
        ),
    ];
    let mut g = c.benchmark_group("clauses");
    g.throughput(Throughput::Elements(packets.len() as u64));
    g.sample_size(20);
    for (name, expr, mut matcher) in cases {
        let bpf = BpfFilter::compile(&expr, 1).expect("compiles");
        let by_bpf = packets.iter().filter(|p| bpf.matches(&p.data)).count();
        let by_matcher = packets
            .iter()
            .filter(|p| matcher.matches(p.link_type, &p.data))
            .count();
        assert_eq!(
            by_bpf, by_matcher,
            "{name}: libpcap and the matcher disagree"
        );
        g.bench_function(format!("{name}/libpcap"), |b| {
            b.iter(|| {
                assert_eq!(
                    packets.iter().filter(|p| bpf.matches(&p.data)).count(),
                    by_bpf
                )
            })
        });
        g.bench_function(format!("{name}/matcher"), |b| {
            b.iter(|| {
                let n = packets
                    .iter()
                    .filter(|p| matcher.matches(p.link_type, &p.data))
                    .count();
                assert_eq!(n, by_matcher)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, clauses);
criterion_main!(benches);
