//! What a structured clause means, against tshark: `host`, `net`, `port`, `tcp`, `udp` and
//! `proto` over every file of the corpus's `formats/`, `protocols/` and `merge/` select exactly
//! the packets tshark's display filters select with defragmentation off — an address, port or
//! protocol at any layer, through VLAN/QinQ, MPLS, PPPoE, GRE (ERSPAN, PPTP), VXLAN, Geneve,
//! GTP-U, Teredo, IP-in-IP and the packet quoted in an ICMP error; the clauses of one query
//! AND-ed per packet, each possibly at a different layer.
//!
//! The values asked for come from tshark too (the file's first address, first port), never from
//! Docket. Where Docket's rule is stated differently from tshark's plain field (`proto` behind
//! IPv6 extension headers: every Next Header of the chain counts), the oracle spells the rule in
//! tshark's own fields, and a test shows where the plain field differs.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::corpus;
use common::server::Server;
use tempfile::TempDir;

const AFTER: &str = "1970-01-01T00:00:01Z";
const BEFORE: &str = "2038-01-01T00:00:00Z";
/// The same window as a display filter.
const WINDOW: &str = "frame.time_epoch >= 1 && frame.time_epoch < 2145916800";
/// tshark with IP reassembly off: a clause is about one captured packet.
const NO_DEFRAG: [&str; 4] = ["-o", "ip.defragment:FALSE", "-o", "ipv6.defragment:FALSE"];

/// Docket's `proto/N` in tshark's fields: the IPv4 protocol, or any Next Header of an IPv6
/// chain (the fixed header's and every extension header's).
fn proto_filter(n: u8) -> String {
    format!(
        "ip.proto=={n} || ipv6.nxt=={n} || ipv6.hopopts.nxt=={n} || ipv6.routing.nxt=={n} || \
         ipv6.fraghdr.nxt=={n} || ipv6.dstopts.nxt=={n} || ah.next_header=={n}"
    )
}

fn port_filter(p: u16) -> String {
    format!("tcp.port=={p} || udp.port=={p} || sctp.port=={p}")
}

/// `ip.addr` for an IPv4 value, `ipv6.addr` for an IPv6 one (tshark 4.0 refuses to compare
/// `ipv6.addr` with an IPv4 literal).
fn addr_filter(a: &str) -> String {
    if a.contains(':') {
        format!("ipv6.addr=={a}")
    } else {
        format!("ip.addr=={a}")
    }
}

/// tshark's fields of every packet of `file` in the window, one line each.
fn fields(file: &Path, filter: &str, fields: &[&str]) -> Vec<String> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r")
        .arg(file)
        .args(NO_DEFRAG)
        .args(["-Y", filter, "-T", "fields"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = common::run_ok(&mut cmd);
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The packets tshark selects from `file` with `filter`, as sorted (time, length) pairs.
fn selected(file: &Path, filter: &str) -> Vec<String> {
    let mut v = fields(
        file,
        &format!("({filter}) && {WINDOW}"),
        &["frame.time_epoch", "frame.len", "frame.cap_len"],
    );
    v.sort();
    v
}

/// The first value of the first packet that has a non-zero `field` (port 0 is not a port
/// one can ask for).
fn first(file: &Path, field: &str) -> Option<String> {
    fields(file, &format!("{field} && {WINDOW}"), &[field])
        .into_iter()
        .filter_map(|l| l.split(',').next().map(str::to_owned))
        .find(|v| !v.is_empty() && v != "0")
}

/// The clauses asked of one file: (URL path part, tshark filter).
fn cases(file: &Path) -> Vec<(String, String)> {
    let mut v = vec![
        ("tcp".to_owned(), proto_filter(6)),
        ("udp".to_owned(), proto_filter(17)),
    ];
    let host = first(file, "ip.src").or_else(|| first(file, "ipv6.src"));
    let port = ["tcp.srcport", "udp.srcport", "sctp.srcport"]
        .iter()
        .find_map(|f| first(file, f))
        .map(|p| p.parse::<u16>().unwrap());
    if let Some(h) = &host {
        v.push((format!("host/{h}"), addr_filter(h)));
        let (net, proto) = if h.contains(':') {
            (format!("{h}/48"), 58)
        } else {
            (format!("{h}/16"), 1)
        };
        v.push((format!("net/{net}"), addr_filter(&net)));
        v.push((format!("proto/{proto}"), proto_filter(proto)));
    }
    if let Some(p) = port {
        v.push((format!("port/{p}"), port_filter(p)));
    }
    if let (Some(h), Some(p)) = (&host, port) {
        v.push((
            format!("host/{h}/port/{p}"),
            format!("({}) && ({})", addr_filter(h), port_filter(p)),
        ));
    }
    v
}

/// Docket's answer to `clauses` over sensor `name`, as sorted (time, length) pairs.
fn ours(server: &Server, name: &str, clauses: &str, work: &Path) -> Vec<String> {
    let path = format!("q/sensor/{name}/after/{AFTER}/before/{BEFORE}/{clauses}/pcap");
    let (code, body) = server.get(&path, &[]);
    assert_eq!(code, 200, "{path}: {}", String::from_utf8_lossy(&body));
    let out = work.join("ours.pcap");
    std::fs::write(&out, &body).unwrap();
    let mut v = fields(
        &out,
        "frame",
        &["frame.time_epoch", "frame.len", "frame.cap_len"],
    );
    v.sort();
    v
}

/// Asks every case of `cases` of sensor `name` (over `file`) and compares with tshark; returns
/// the differences.
fn compare(
    server: &Server,
    name: &str,
    file: &Path,
    cases: Vec<(String, String)>,
    work: &Path,
) -> Vec<String> {
    let mut failures = Vec::new();
    for (clauses, filter) in cases {
        let want = selected(file, &filter);
        let got = ours(server, name, &clauses, work);
        if want != got {
            failures.push(format!(
                "{} | {clauses} | tshark -Y '{filter}': {} packets, Docket {}",
                file.display(),
                want.len(),
                got.len()
            ));
        }
    }
    failures
}

fn start(sensors: &[(String, PathBuf, PathBuf)]) -> Server {
    let locals: Vec<(&str, PathBuf)> = sensors
        .iter()
        .map(|(n, d, _)| (n.as_str(), d.clone()))
        .collect();
    Server::start(&locals, "time_window = 1")
}

#[test]
fn structured_clauses_select_what_tshark_selects_on_every_file() {
    let work = TempDir::new().unwrap();
    let files = common::every_kind_of_file();
    let sensors = common::one_sensor_per_file(work.path(), "f", &files);
    let server = start(&sensors);
    let mut checked = 0;
    let mut failures = Vec::new();
    for (name, _, file) in &sensors {
        let cases = cases(file);
        checked += cases.len();
        failures.extend(compare(&server, name, file, cases, work.path()));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked > 300, "{checked}");
}

/// Every encapsulation in the list of `tests/encapsulations.py` (written by scapy, one packet
/// each with addresses and ports of its own): each address, each port, each protocol number of
/// the file, and per packet its outermost address AND its innermost port (two clauses met at
/// different layers), against tshark.
#[test]
fn every_encapsulation_is_looked_through_as_tshark_does() {
    let work = TempDir::new().unwrap();
    let made = work.path().join("made");
    std::fs::create_dir(&made).unwrap();
    common::run_ok(
        Command::new("/usr/bin/python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/encapsulations.py"))
            .arg(&made),
    );
    let mut files: Vec<PathBuf> = std::fs::read_dir(&made)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let sensors = common::one_sensor_per_file(work.path(), "m", &files);
    let server = start(&sensors);
    let mut failures = Vec::new();
    let mut checked = 0;
    for (name, _, file) in &sensors {
        let mut cases: Vec<(String, String)> = Vec::new();
        let rows = fields(
            file,
            "frame",
            &["ip.addr", "ipv6.addr", "tcp.port", "udp.port", "sctp.port"],
        );
        let mut addrs: Vec<String> = Vec::new();
        let mut ports: Vec<u16> = Vec::new();
        for row in &rows {
            let cols: Vec<&str> = row.split('\t').collect();
            let split = |i: usize| -> Vec<String> {
                cols.get(i)
                    .map(|c| {
                        c.split(',')
                            .filter(|v| !v.is_empty())
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let a: Vec<String> = [split(0), split(1)].concat();
            let p: Vec<u16> = [split(2), split(3), split(4)]
                .concat()
                .iter()
                .filter_map(|v| v.parse().ok())
                .filter(|&v| v != 0)
                .collect();
            if let (Some(outer), Some(inner)) = (a.first(), p.last()) {
                cases.push((
                    format!("host/{outer}/port/{inner}"),
                    format!("({}) && ({})", addr_filter(outer), port_filter(*inner)),
                ));
            }
            addrs.extend(a);
            ports.extend(p);
        }
        addrs.sort();
        addrs.dedup();
        ports.sort();
        ports.dedup();
        cases.extend(addrs.iter().map(|a| (format!("host/{a}"), addr_filter(a))));
        cases.extend(ports.iter().map(|p| (format!("port/{p}"), port_filter(*p))));
        for n in [0u8, 1, 4, 6, 17, 41, 43, 44, 47, 51, 58, 60, 132] {
            cases.push((format!("proto/{n}"), proto_filter(n)));
        }
        checked += cases.len();
        failures.extend(compare(&server, name, file, cases, work.path()));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked > 150, "{checked}");
}

/// `proto` behind IPv6 extension headers, Docket's stated rule: every Next Header of the chain
/// counts. On IPv6 fragments of UDP, tshark's plain `ipv6.nxt==17` (the fixed header's: 44,
/// the fragment header) finds none of them; Docket finds what the chain-wide spelling of the
/// rule in tshark's own fields finds — all of them.
#[test]
fn proto_behind_ipv6_extension_headers_follows_the_stated_rule() {
    let work = TempDir::new().unwrap();
    let file = corpus().join("protocols/ipv6-fragments__pcpp-ip6_fragments.pcap");
    let sensors = common::one_sensor_per_file(work.path(), "x", std::slice::from_ref(&file));
    let server = start(&sensors);
    let got = ours(&server, "x0", "udp", work.path());
    let plain = selected(&file, "ip.proto==17 || ipv6.nxt==17");
    let rule = selected(&file, &proto_filter(17));
    assert!(
        plain.len() < rule.len(),
        "{} vs {}",
        plain.len(),
        rule.len()
    );
    assert_eq!(got, rule);
}
