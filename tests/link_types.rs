//! Every link type right: raw `bpf` expressions over every file of the corpus's `formats/`,
//! `protocols/` and `merge/` must select exactly what `tcpdump -r FILE EXPR` selects (the
//! tcpdump → editcap → mergecap oracle), whatever the file's link type — raw IP written as
//! LINKTYPE 101 or DLT 12, IPv4/IPv6 link types, Linux cooked captures, BSD loopback in either
//! byte order, pcapng interfaces of mixed types.

mod common;

use std::path::PathBuf;

use common::server::{assert_same_packets, epoch, oracle, Server};
use tempfile::TempDir;

const AFTER: &str = "1970-01-01T00:00:01Z";
/// editcap reads its `-B` as a 32-bit time.
const BEFORE: &str = "2038-01-01T00:00:00Z";

#[test]
fn bpf_selects_what_tcpdump_selects_on_every_link_type() {
    let work = TempDir::new().unwrap();
    let files = common::every_kind_of_file();
    let sensors: Vec<(String, PathBuf)> = common::one_sensor_per_file(work.path(), "f", &files)
        .into_iter()
        .map(|(n, d, _)| (n, d))
        .collect();
    let locals: Vec<(&str, PathBuf)> = sensors
        .iter()
        .map(|(n, d)| (n.as_str(), d.clone()))
        .collect();
    let server = Server::start(&locals, "time_window = 1");
    let mut checked = 0;
    for (name, dir) in &sensors {
        let file = std::fs::read_dir(dir)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        // libpcap cannot read a few valid files Wireshark reads (pcapng sections of both byte
        // orders): for those the oracle is libpcap over Wireshark's one-section rewrite.
        let split = !tcpdump_reads(&file);
        let oracle_dir = if !split {
            dir.clone()
        } else {
            let d = work.path().join(format!("{name}-split"));
            std::fs::create_dir(&d).unwrap();
            split_for_libpcap(&file, &d);
            eprintln!(
                "{}: libpcap cannot read it; oracle over Wireshark's rewrite, one file per link type",
                file.display()
            );
            d
        };
        for expr in ["ip", "ip6", "tcp or udp", "vlan", "mpls"] {
            let what = format!("{} | {expr}", file.display());
            let encoded = expr.replace(' ', "%20");
            let path = format!("q/sensor/{name}/after/{AFTER}/before/{BEFORE}/bpf/{encoded}/pcap");
            let (code, body) = server.get(&path, &[]);
            assert_eq!(code, 200, "{what}: {}", String::from_utf8_lossy(&body));
            let ours = work.path().join(format!("ours-{checked}.pcap"));
            std::fs::write(&ours, &body).unwrap();
            match oracle(
                std::slice::from_ref(&oracle_dir),
                expr,
                epoch(AFTER),
                epoch(BEFORE),
                work.path(),
            ) {
                Some(expected) if !split => assert_same_packets(&ours, &expected, &what),
                // The rewrite's files are merged by time; a file with a step back in time is
                // answered in file order: the same packets, compared as sets.
                Some(expected) => {
                    let key = |p: &common::SharkPacket| (p.time.clone(), p.data.clone());
                    let mut a = common::tshark_packets(&ours);
                    let mut b = common::tshark_packets(&expected);
                    a.sort_by_key(key);
                    b.sort_by_key(key);
                    assert!(a == b, "{what}: {} vs {} packets", a.len(), b.len());
                }
                None => assert!(
                    common::tshark_packets(&ours).is_empty(),
                    "{what}: tcpdump selects nothing"
                ),
            }
            checked += 1;
        }
    }
    assert!(checked > 200, "{checked}");
}

/// Whether libpcap reads the whole file.
fn tcpdump_reads(file: &std::path::Path) -> bool {
    std::process::Command::new("tcpdump")
        .arg("-r")
        .arg(file)
        .args(["-w", "/dev/null"])
        .output()
        .unwrap()
        .status
        .success()
}

/// Wireshark's rewrite of `file` into `dir` as files libpcap reads: one nanosecond pcap
/// per link type (libpcap reads neither pcapng sections of both byte orders nor interfaces
/// of several link types in one file).
fn split_for_libpcap(file: &std::path::Path, dir: &std::path::Path) {
    let encaps = common::run_ok(
        std::process::Command::new("tshark")
            .arg("-r")
            .arg(file)
            .args(["-T", "fields", "-e", "frame.encap_type"]),
    );
    let mut encaps: Vec<String> = String::from_utf8(encaps)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .filter(|l| !l.is_empty())
        .collect();
    encaps.sort();
    encaps.dedup();
    // capinfos names each interface's encapsulation "Ethernet (1 - ether)": number → the short
    // name editcap's -T takes.
    let info = String::from_utf8(common::run_ok(
        std::process::Command::new("capinfos").arg(file),
    ))
    .unwrap();
    let short = |n: &str| -> String {
        let key = format!("({n} - ");
        let at = info
            .find(&key)
            .unwrap_or_else(|| panic!("encap {n} in {info}"));
        let rest = &info[at + key.len()..];
        rest[..rest.find(')').unwrap()].to_owned()
    };
    for e in encaps {
        let part = dir.join(format!("encap-{e}.pcapng"));
        common::run_ok(
            std::process::Command::new("tshark")
                .arg("-r")
                .arg(file)
                .args([
                    "-Y",
                    &format!("frame.encap_type == {e}"),
                    "-F",
                    "pcapng",
                    "-w",
                ])
                .arg(&part),
        );
        common::run_ok(
            std::process::Command::new("editcap")
                .args(["-F", "nsecpcap", "-T", &short(&e)])
                .arg(&part)
                .arg(dir.join(format!("encap-{e}.pcap"))),
        );
        std::fs::remove_file(&part).unwrap();
    }
}
