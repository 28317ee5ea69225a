//! Unit tests of the query module: every clause, every input type, the canonical form and
//! job ids, the renderings, and round trips through [`Query::to_path`].

use std::net::IpAddr;

use super::*;
use crate::pcap::{Timestamp, NANOS_PER_SEC};

/// 2024-01-02T03:04:05Z.
const NOW_SECS: i128 = 1_704_164_645;

fn now() -> Timestamp {
    Timestamp(NOW_SECS * NANOS_PER_SEC)
}

fn secs(s: i128) -> Timestamp {
    Timestamp(s * NANOS_PER_SEC)
}

fn cfg() -> QueryConfig {
    QueryConfig::default()
}

fn path(p: &str) -> Query {
    parse_path(p, now(), &cfg()).unwrap_or_else(|e| panic!("{p}: {e:?}"))
}

fn path_err(p: &str) -> Error {
    match parse_path(p, now(), &cfg()) {
        Ok(q) => panic!("{p} parsed: {q:?}"),
        Err(e) => e,
    }
}

fn json(body: &str) -> Query {
    parse_json(body.as_bytes(), now(), &cfg()).unwrap_or_else(|e| panic!("{body}: {e:?}"))
}

fn json_err(body: &str) -> Error {
    match parse_json(body.as_bytes(), now(), &cfg()) {
        Ok(q) => panic!("{body} parsed: {q:?}"),
        Err(e) => e,
    }
}

fn form(body: &str) -> Query {
    parse_form(body.as_bytes(), now(), &cfg()).unwrap_or_else(|e| panic!("{body}: {e:?}"))
}

fn form_err(body: &str) -> Error {
    match parse_form(body.as_bytes(), now(), &cfg()) {
        Ok(q) => panic!("{body} parsed: {q:?}"),
        Err(e) => e,
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Fixed window used by many tests: 03:04:00 .. 03:10:00 on 2024-01-02.
const WIN: &str = "after/2024-01-02T03:04:00Z/before/2024-01-02T03:10:00Z";

// ---------------------------------------------------------------- clauses

#[test]
fn host_clause_v4_v6_repeatable_sorted_dedup() {
    let q = path(&format!(
        "{WIN}/host/2001:DB8:0:0::1/host/10.0.0.2/host/10.0.0.1/host/2001:db8::1"
    ));
    assert_eq!(
        q.hosts,
        vec![ip("10.0.0.1"), ip("10.0.0.2"), ip("2001:db8::1")]
    );
    let e = path_err("host/10.0.0.256");
    assert_eq!(
        (e.clause.as_str(), e.value.as_str()),
        ("host", "10.0.0.256")
    );
    assert_eq!(path_err("host/fe80::1%25eth0").clause, "host");
    assert_eq!(path_err("host/example.com").clause, "host");
}

#[test]
fn ipv6_normalisation_same_id() {
    let a = path(&format!("{WIN}/host/2001:DB8:0:0::1"));
    let b = path(&format!("{WIN}/host/2001:db8::1"));
    assert_eq!(a, b);
    assert_eq!(a.id(), b.id());
    assert!(a.canonical().contains("host 2001:db8::1"));
}

#[test]
fn net_clause_prefix_mask_and_normalisation() {
    let q = path(&format!("{WIN}/net/10.1.2.3/8"));
    assert_eq!(
        q.nets,
        vec![Net {
            addr: ip("10.0.0.0"),
            prefix: 8
        }]
    );
    // Dotted mask converted, and equal to the prefix form.
    assert_eq!(path(&format!("{WIN}/net/10.9.9.9/255.0.0.0")), q);
    assert_eq!(
        path(&format!("{WIN}/net/192.168.1.7/255.255.255.0")).nets[0].to_string(),
        "192.168.1.0/24"
    );
    assert_eq!(
        path(&format!("{WIN}/net/1.2.3.4/0.0.0.0")).nets[0].to_string(),
        "0.0.0.0/0"
    );
    // A CIDR in one segment with an encoded slash.
    assert_eq!(path(&format!("{WIN}/net/10.0.0.0%2F8")), q);
    // Non-contiguous mask.
    let e = path_err("net/10.0.0.0/255.0.255.0");
    assert_eq!(e.clause, "net");
    assert!(e.message.contains("not contiguous"), "{}", e.message);
    // Prefix bounds.
    assert_eq!(path_err("net/10.0.0.0/33").clause, "net");
    assert_eq!(path_err("net/2001:db8::/129").clause, "net");
    assert_eq!(path_err("net/10.0.0.0/-1").clause, "net");
    assert_eq!(path_err("net/10.0.0.0/x").clause, "net");
    assert_eq!(path_err("net/2001:db8::/ffff::").clause, "net");
    assert_eq!(path_err("net/nope/8").clause, "net");
    assert_eq!(path(&format!("{WIN}/net/0.0.0.0/0")).nets[0].prefix, 0);
    assert_eq!(
        path(&format!("{WIN}/net/10.1.1.1/32")).nets[0].to_string(),
        "10.1.1.1/32"
    );
    let v6 = path(&format!(
        "{WIN}/net/2001:DB8::ff/128/net/2001:db8:1:2::5/32"
    ));
    assert_eq!(
        v6.nets.iter().map(ToString::to_string).collect::<Vec<_>>(),
        vec!["2001:db8::/32", "2001:db8::ff/128"]
    );
    assert_eq!(path(&format!("{WIN}/net/::/0")).nets[0].to_string(), "::/0");
    // Duplicates after normalisation collapse.
    assert_eq!(
        path(&format!("{WIN}/net/10.0.0.1/8/net/10.2.0.0/8"))
            .nets
            .len(),
        1
    );
}

#[test]
fn net_from_str_and_new() {
    let n: Net = "172.16.5.4/12".parse().unwrap();
    assert_eq!(n.to_string(), "172.16.0.0/12");
    assert_eq!(Net::new(ip("10.1.2.3"), 40).to_string(), "10.1.2.3/32");
    assert!("10.0.0.0".parse::<Net>().is_err());
}

#[test]
fn port_clause() {
    let q = path(&format!("{WIN}/port/443/port/80/port/443/PORT/8080"));
    assert_eq!(q.ports, vec![80, 443, 8080]);
    assert_eq!(
        path(&format!("{WIN}/port/1/port/65535")).ports,
        vec![1, 65535]
    );
    for bad in [
        "0",
        "65536",
        "66000",
        "abc",
        "-1",
        "+80",
        "8 0",
        "99999999999999999999999",
    ] {
        let e = path_err(&format!("port/{}", bad.replace(' ', "%20")));
        assert_eq!(e.clause, "port", "{bad}");
        assert_eq!(e.value, bad);
    }
    assert_eq!(
        path_err("port/66000").message,
        "port 66000 out of range 1-65535"
    );
    assert_eq!(path_err("port/abc").message, "port abc is not a number");
}

#[test]
fn proto_clauses_and_conflicts() {
    assert_eq!(path(&format!("{WIN}/tcp")).proto, Some(6));
    assert_eq!(path(&format!("{WIN}/UDP")).proto, Some(17));
    assert_eq!(path(&format!("{WIN}/Icmp")).proto, Some(1));
    assert_eq!(path(&format!("{WIN}/proto/47")).proto, Some(47));
    assert_eq!(path(&format!("{WIN}/proto/0")).proto, Some(0));
    assert_eq!(path(&format!("{WIN}/proto/255")).proto, Some(255));
    // Same protocol twice, in different spellings, is fine and the same query.
    assert_eq!(
        path(&format!("{WIN}/tcp/proto/6/tcp")),
        path(&format!("{WIN}/proto/6"))
    );
    for bad in ["tcp/udp", "proto/6/udp", "icmp/proto/17", "proto/1/proto/2"] {
        let e = path_err(&format!("{WIN}/{bad}"));
        assert_eq!(e.clause, "proto", "{bad}");
        assert!(e.message.contains("conflicting"), "{}", e.message);
    }
    assert_eq!(path_err("proto/256").clause, "proto");
    assert_eq!(path_err("proto/tcp").clause, "proto");
    assert_eq!(path_err("proto/-1").clause, "proto");
}

#[test]
fn sensor_clause() {
    let q = path(&format!("{WIN}/sensor/b/sensor/a.x-1_Z/sensor/b"));
    assert_eq!(q.sensors, vec!["a.x-1_Z".to_owned(), "b".to_owned()]);
    let long = "s".repeat(64);
    assert_eq!(
        path(&format!("{WIN}/sensor/{long}")).sensors,
        vec![long.clone()]
    );
    for bad in [
        format!("{long}s"),
        "a%20b".into(),
        "..".into(),
        ".".into(),
        "a%2Fb".into(),
        "é".into(),
    ] {
        assert_eq!(path_err(&format!("sensor/{bad}")).clause, "sensor", "{bad}");
    }
}

#[test]
fn limit_clauses() {
    let q = path(&format!("{WIN}/limit-bytes/10MB/limit-packets/1000"));
    assert_eq!(q.limit_bytes, Some(10 << 20));
    assert_eq!(q.limit_packets, Some(1000));
    let cases = [
        ("1048576", 1 << 20),
        ("1.5GB", 1_610_612_736),
        ("1kb", 1024),
        ("2 KB", 2048),
        ("7B", 7),
        ("1TB", 1 << 40),
        ("1PB", 1 << 50),
        ("0.5KB", 512),
        // Summed, as Docket-py's parse_capacity.
        ("0.5MB 1KB", 525_312),
        ("1GB 512MB", 1_610_612_736),
        ("1KB1B", 1025),
    ];
    for (text, n) in cases {
        let q = path(&format!("{WIN}/limit-bytes/{}", text.replace(' ', "%20")));
        assert_eq!(q.limit_bytes, Some(n), "{text}");
    }
    for bad in [
        "0",
        "0.0001B",
        "abc",
        "10XB",
        "-5",
        "1.5.3GB",
        ".5GB",
        "99999999999PB",
        "1KB x",
        "9999999PB 9999999PB",
    ] {
        assert_eq!(
            path_err(&format!("limit-bytes/{bad}")).clause,
            "limit-bytes",
            "{bad}"
        );
    }
    for bad in ["0", "-1", "1.5", "x", "99999999999999999999999"] {
        assert_eq!(
            path_err(&format!("limit-packets/{bad}")).clause,
            "limit-packets",
            "{bad}"
        );
    }
    // A repeat with the same value is fine, a different one is not.
    assert_eq!(
        path(&format!("{WIN}/limit-bytes/1KB/limit-bytes/1024")).limit_bytes,
        Some(1024)
    );
    assert_eq!(
        path_err("limit-bytes/1KB/limit-bytes/1MB").clause,
        "limit-bytes"
    );
    assert_eq!(
        path_err("limit-packets/1/limit-packets/2").clause,
        "limit-packets"
    );
}

#[test]
fn bpf_clause() {
    let q = path(&format!("{WIN}/bpf/tcp%5B13%5D%20%26%202%20!%3D%200"));
    assert_eq!(q.bpf.as_deref(), Some("tcp[13] & 2 != 0"));
    // An encoded slash stays inside the value.
    let q = path(&format!("{WIN}/bpf/len%20%2F%202%20%3E%2010"));
    assert_eq!(q.bpf.as_deref(), Some("len / 2 > 10"));
    // `+` is a space, as Docket-py's unquote_plus; `%2B` a plus.
    let q = path(&format!("{WIN}/bpf/tcp+and+ip%5B2%3A2%5D+%2B+4+%3E+100"));
    assert_eq!(q.bpf.as_deref(), Some("tcp and ip[2:2] + 4 > 100"));
    // Only in the bpf value: a time's offset keeps its plus.
    assert_eq!(
        path("after/2024-01-02T05:04:00+02:00/before/2024-01-02T03:10:00Z/bpf/tcp").after,
        secs(1_704_164_640)
    );
    assert_eq!(path_err("bpf/%20%20").clause, "bpf");
    assert_eq!(path_err("bpf/a%00b").clause, "bpf");
    let long = "a".repeat(MAX_BPF_LEN + 1);
    let e = path_err(&format!("bpf/{long}"));
    assert_eq!(e.clause, "bpf");
    assert!(e.value.len() <= 64);
    // Exactly the limit (a valid expression padded with spaces) is fine.
    let padded = format!("tcp{}", "%20".repeat(MAX_BPF_LEN - 3));
    assert!(path(&format!("{WIN}/bpf/{padded}")).bpf.is_some());
    // libpcap compiles the expression: a typo, and text that would break out of the
    // parentheses it is wrapped in, are refused.
    assert_eq!(path_err("bpf/hots%2010.0.0.1").clause, "bpf");
    assert_eq!(path_err("bpf/tcp)%20or%20(udp").clause, "bpf");
    assert_eq!(path_err("path/%FF").clause, "path");
}

#[test]
fn bpf_host_names_are_refused_before_libpcap_could_resolve_them() {
    // Each of these would make libpcap ask the system resolver (DNS) while compiling.
    for expr in [
        "host example.invalid",
        "src host localhost",
        "gateway router1",
        "foo",
        "tcp and foo",
        "host 10.0.0.1 or foo",
        "dst foo.example",
        "ip host \\foo",
        "not (port 80 and host bar)",
        // Found by an attack: words that look numeric but are names to libpcap.
        "host 1.2.3.4.5",
        "host 1.2.3.4a",
        "host dead.beef",
        "host cafe.be",
        "dst host face.b00c",
        "host tcp-foo",
        "host \\\\tcp",
        "TCP",
        "1e100.net",
    ] {
        let e = path_err(&format!(
            "{WIN}/bpf/{}",
            expr.replace(' ', "%20").replace('/', "%2F")
        ));
        assert_eq!(e.clause, "bpf", "{expr}");
        assert!(e.message.contains("not resolved"), "{expr}: {}", e.message);
    }
    // Numbers, addresses and names looked up in local files only stay allowed.
    for expr in [
        "host 10.0.0.1",
        "ip6 host ::1",
        "net 10.0.0.0/8",
        "tcp port http",
        "port 80 or domain",
        "portrange 1-1024",
        "ip proto \\tcp",
        "ether host 00:11:22:33:44:55",
        "ether src 00-11-22-33-44-55",
        "tcp[tcpflags] & (tcp-syn|tcp-ack) != 0",
        "icmp[icmptype] == icmp-echo",
        "vlan 100 and ip",
        "ip[2:2] > 576",
        "len <= 0x200",
        "pppoes and udp",
        "host 10.1",
        "host 0x0a000001",
        "ether host abcd.ef01.2345",
        "ether host deadbeefcafe",
        "ip6 host 2001:db8::1 and ip6[6] == 6",
    ] {
        assert!(
            path(&format!(
                "{WIN}/bpf/{}",
                expr.replace(' ', "%20").replace('/', "%2F")
            ))
            .bpf
            .is_some(),
            "{expr}"
        );
    }
}

#[test]
fn format_and_ignore_weight() {
    assert_eq!(path(WIN).output, OutputKind::Auto);
    assert_eq!(path(&format!("{WIN}/format/pcap")).output, OutputKind::Pcap);
    assert_eq!(
        path(&format!("{WIN}/FORMAT/PcapNG")).output,
        OutputKind::Pcapng
    );
    assert_eq!(path_err("format/json").clause, "format");
    assert_eq!(path_err("format/pcap/format/pcapng").clause, "format");
    // ignore-weight changes whether a job starts, not which job: same id and canonical form.
    let heavy = path(&format!("{WIN}/ignore-weight"));
    assert!(heavy.ignore_weight && !path(WIN).ignore_weight);
    assert_eq!(heavy.id(), path(WIN).id());
    assert_eq!(heavy.canonical(), path(WIN).canonical());
    assert!(heavy.to_path().ends_with("/ignore-weight"));
    assert!(json(r#"{"ignore-weight": true}"#).ignore_weight);
    assert!(!json(r#"{"ignore-weight": false}"#).ignore_weight);
}

#[test]
fn keywords_case_insensitive_and_slashes() {
    let a = path(&format!("{WIN}/host/10.0.0.1/port/80/tcp/sensor/s1"));
    let b = path(
        "//AFTER/2024-01-02T03:04:00Z/Before/2024-01-02T03:10:00Z//HOST/10.0.0.1/Port/80/TCP/SENSOR/s1/",
    );
    assert_eq!(a, b);
}

#[test]
fn unknown_and_dangling_clauses() {
    let e = path_err("host/10.0.0.1/frobnicate/3");
    assert_eq!(
        (e.clause.as_str(), e.value.as_str()),
        ("frobnicate", "frobnicate")
    );
    assert!(e.message.contains("frobnicate"));
    // The trailing `pcap` is the HTTP layer's business.
    assert_eq!(path_err("host/10.0.0.1/pcap").clause, "pcap");
    for kw in [
        "host",
        "net",
        "port",
        "proto",
        "after",
        "before",
        "sensor",
        "limit-bytes",
        "limit-packets",
        "bpf",
        "format",
    ] {
        let e = path_err(&format!("tcp/{kw}"));
        assert_eq!(e.clause, kw);
        assert_eq!(
            e.message.split(':').next().unwrap(),
            format!("incomplete {kw} clause")
        );
        // Keyword case does not leak into the clause name.
        assert_eq!(path_err(&kw.to_uppercase()).clause, kw);
    }
    assert_eq!(path_err("net/10.0.0.0").clause, "net");
}

// ---------------------------------------------------------------- times

#[test]
fn time_forms() {
    let q = path("after/2024-01-02T03:04:00Z/before/2024-01-02T03:10:00Z");
    assert_eq!(q.after, secs(1_704_164_640));
    assert_eq!(q.before, secs(1_704_165_000));
    // A non-Z offset is converted to UTC (Docket-py dropped it).
    let q2 = path("after/2024-01-02T05:04:00%2B02:00/before/2024-01-01T22:10:00-05:00");
    assert_eq!(q2, q);
    // Unencoded `+` in a path is a literal plus.
    assert_eq!(
        path("after/2024-01-02T05:04:00+02:00/before/2024-01-02T03:10:00Z"),
        q
    );
    // Fractional seconds, lower-case t/z: kept to the nanosecond.
    let q3 = path("after/2024-01-02T03:04:59.999999999Z/before/2024-01-02t03:09:00.5z");
    assert_eq!(q3.after, Timestamp(1_704_164_699_999_999_999));
    assert_eq!(q3.before, Timestamp(1_704_164_940_500_000_000));
    // `@` epoch seconds are absolute, integer or decimal.
    assert_eq!(path("after/@1704164640/before/@1704165000"), q);
    assert_eq!(
        path("after/@1704164659.5/before/@1704164940.000000001").after,
        Timestamp(1_704_164_659_500_000_000)
    );
    // An absolute window is exact: ten seconds are ten seconds.
    let ten = path("after/2024-01-02T03:04:30Z/before/2024-01-02T03:04:40Z");
    assert_eq!(
        (ten.after, ten.before),
        (secs(1_704_164_670), secs(1_704_164_680))
    );
    // Zone-less times and dates alone are UTC (Docket-py's habit).
    assert_eq!(
        path("after/2024-01-02T03:04:00/before/2024-01-02 03:10:00"),
        q
    );
    assert_eq!(path("after/2024-01-02T03:04/before/2024-01-02T03:10"), q);
    assert_eq!(
        path("after/2024-01-02/before/2024-01-03").after,
        secs(1_704_153_600)
    );
    // A bare number is a duration in seconds, as in Docket-py: the last hour.
    assert_eq!(path("after/3600"), path("after/1h"));
    // One that big is an epoch without its `@`: refused, saying so.
    let e = path_err("after/1704164640");
    assert!(e.message.contains("@1704164640"), "{}", e.message);
    // Garbage.
    for bad in [
        "yesterday",
        "2024-13-02T00:00:00Z",
        "2024-01-02T25:00:00",
        "@",
        "@abc",
        "@-5",
        "5x",
        "1h30",
        "-5",
        "1e9",
        "",
    ] {
        if bad.is_empty() {
            continue;
        }
        let e = path_err(&format!("after/{bad}"));
        assert_eq!((e.clause.as_str(), e.value.as_str()), ("after", bad));
    }
}

#[test]
fn relative_durations() {
    // 1h30m == 90m == 1.5h == 5400s, all relative to now.
    let base = path("after/1h30m/before/1m");
    for spelled in [
        "90m",
        "1.5h",
        "5400s",
        "1H30M",
        "5400000ms",
        "5400000000us",
        "1h29m60s",
    ] {
        assert_eq!(
            path(&format!("after/{spelled}/before/1m")),
            base,
            "{spelled}"
        );
    }
    // now = 03:04:05, -1h30m = 01:34:05 → floor 01:34:00; before now-1m = 03:03:05 → ceil 03:04:00.
    assert_eq!(base.after, secs(NOW_SECS - 5400 - 5));
    assert_eq!(base.before, secs(NOW_SECS - 5));
    assert_eq!(path("after/2d").after, secs(NOW_SECS - 2 * 86400 - 5));
    assert_eq!(path("after/1w").after, secs(NOW_SECS - 7 * 86400 - 5));
    // 1.2h3.4m5.6s = 4320 + 204 + 5.6 = 4529.6 s; now - that = …, floored to the minute.
    let t = NOW_SECS * NANOS_PER_SEC - 4_529_600_000_000;
    assert_eq!(
        path("after/1.2h3.4m5.6s").after.0,
        t.div_euclid(60 * NANOS_PER_SEC) * 60 * NANOS_PER_SEC
    );
    // Too far back for 1970.
    let e = path_err("after/100000w");
    assert_eq!(e.clause, "after");
    assert!(e.message.contains("1970"), "{}", e.message);
    // Absurd sizes do not overflow.
    assert_eq!(
        path_err(&format!("after/{}w", "9".repeat(40))).clause,
        "after"
    );
    assert_eq!(
        path_err(&format!("after/{}h", "9".repeat(200))).clause,
        "after"
    );
}

#[test]
fn defaults_and_quantisation() {
    // No times: after = floor(now - 24h), before = floor(now) + 60s.
    let q = path("host/10.0.0.1");
    assert_eq!(q.after, secs(NOW_SECS - 5 - 86400));
    assert_eq!(q.before, secs(NOW_SECS - 5 + 60));
    // now on a boundary: before = now + window.
    let on = Timestamp((NOW_SECS - 5) * NANOS_PER_SEC);
    let q = parse_path("", on, &cfg()).unwrap();
    assert_eq!(q.before, secs(NOW_SECS - 5 + 60));
    assert_eq!(q.after, secs(NOW_SECS - 5 - 86400));
    // Requests within the same window share the query.
    let later = Timestamp((NOW_SECS + 60) * NANOS_PER_SEC);
    assert_eq!(
        parse_path("after/5m", now(), &cfg()),
        parse_path("after/5m", Timestamp(now().0 + 1), &cfg())
    );
    assert_ne!(
        parse_path("after/5m", now(), &cfg()),
        parse_path("after/5m", later, &cfg())
    );
    // A relative before on a boundary stays (now − 5 s = 03:04:00); one past it goes up.
    assert_eq!(path("after/1h/before/5s").before, secs(NOW_SECS - 5));
    assert_eq!(path("after/1h/before/4s").before, secs(NOW_SECS - 5 + 60));
    // An absolute one is never moved.
    assert_eq!(
        path("after/@1704164640/before/@1704165000.000000001").before,
        Timestamp(1_704_165_000_000_000_001)
    );
    // Config: window and long_ago.
    let c = QueryConfig {
        time_window_secs: 3600,
        long_ago_secs: 7200,
    };
    let q = parse_path("", now(), &c).unwrap();
    assert_eq!(q.after, secs(1_704_157_200)); // 01:00
    assert_eq!(q.before, secs(1_704_168_000)); // 04:00
                                               // A zero window behaves as one second.
    let c0 = QueryConfig {
        time_window_secs: 0,
        long_ago_secs: 10,
    };
    let q = parse_path("", Timestamp(now().0 + 300_000_000), &c0).unwrap();
    assert_eq!(
        (q.after, q.before),
        (secs(NOW_SECS - 10), secs(NOW_SECS + 1))
    );
}

#[test]
fn empty_range_and_year_bounds() {
    let e = path_err("after/2024-01-02T03:10:00Z/before/2024-01-02T03:04:00Z");
    assert_eq!(e.clause, "before");
    // Absolute ends are exact: equal is empty, five seconds are five seconds.
    assert_eq!(
        path_err("after/@1704164650/before/@1704164650").clause,
        "before"
    );
    let q = path("after/@1704164650/before/@1704164655");
    assert_eq!(
        (q.after, q.before),
        (secs(1_704_164_650), secs(1_704_164_655))
    );
    // Relative ends in one window are quantised apart: floor/ceil widen them.
    let q = path("after/10s/before/8s");
    assert_eq!(
        (q.after, q.before),
        (secs(NOW_SECS - 65), secs(NOW_SECS - 5))
    );
    // An after in the future beyond the default before.
    assert_eq!(path_err("after/2030-01-01T00:00:00Z").clause, "before");
    // Years.
    let e = path_err("after/1969-12-31T23:59:59Z");
    assert_eq!(e.clause, "after");
    assert!(e.message.contains("1970"));
    assert_eq!(path_err("before/@99999999999999").clause, "before");
    // Exact, so the last minute of year 9999 can be asked for.
    assert!(path("after/9999-12-31T23:59:00Z/before/9999-12-31T23:59:30Z").before > secs(0));
    let q = path("after/9999-12-31T23:58:00Z/before/9999-12-31T23:59:00Z");
    assert!(q.stenographer().ends_with("before 9999-12-31T23:59:00Z"));
    assert_eq!(path("after/@0/before/@60").after, secs(0));
    // A "now" outside the range gives errors, not panics.
    assert!(parse_path("", Timestamp(i128::MIN), &cfg()).is_err());
    assert!(parse_path("", Timestamp(i128::MAX), &cfg()).is_err());
    assert!(parse_path("after/1h", Timestamp(i128::MIN), &cfg()).is_err());
    assert!(parse_path("after/@1704164640/before/1d", Timestamp(i128::MAX), &cfg()).is_err());
}

#[test]
fn conflicting_times() {
    assert_eq!(path_err("after/5m/after/10m").clause, "after");
    assert_eq!(path(&format!("{WIN}/after/@1704164640")), path(WIN));
    let e = json_err(r#"{"after": "5m", "after-ago": "10m"}"#);
    assert_eq!(e.clause, "after-ago");
    // after and after-ago meaning the same duration agree.
    assert_eq!(
        json(r#"{"after": "5m", "after-ago": "300"}"#),
        path("after/5m")
    );
}

// ---------------------------------------------------------------- JSON and form

#[test]
fn json_all_fields() {
    let q = json(
        r#"{"host": ["10.0.0.2", "2001:DB8::1"], "net": "10.9.9.9/255.0.0.0", "port": [443, "80"],
            "proto": "6", "after": "2024-01-02T03:04:00Z", "before": "@1704165000",
            "sensor": ["b", "a"], "Steno-Limit-Bytes": "1MB", "limit-packets": 5,
            "bpf": "tcp[13] & 2 != 0", "format": "pcapng", "ignore-weight": true}"#,
    );
    assert_eq!(q.hosts, vec![ip("10.0.0.2"), ip("2001:db8::1")]);
    assert_eq!(q.nets[0].to_string(), "10.0.0.0/8");
    assert_eq!(q.ports, vec![80, 443]);
    assert_eq!(q.proto, Some(6));
    assert_eq!(
        (q.after, q.before),
        (secs(1_704_164_640), secs(1_704_165_000))
    );
    assert_eq!(q.sensors, vec!["a", "b"]);
    assert_eq!(q.limit_bytes, Some(1 << 20));
    assert_eq!(q.limit_packets, Some(5));
    assert_eq!(q.bpf.as_deref(), Some("tcp[13] & 2 != 0"));
    assert_eq!(q.output, OutputKind::Pcapng);
    // proto-name, any case; ago fields; Steno-Limit-Packets and limit-bytes.
    let q = json(
        r#"{"proto-name": "UDP", "after-ago": "1h30m", "before-ago": 60,
            "Steno-Limit-Packets": "7", "limit-bytes": 2048, "host": null}"#,
    );
    assert_eq!(q.proto, Some(17));
    assert_eq!(
        q,
        path("udp/after/90m/before/1m/limit-packets/7/limit-bytes/2KB")
    );
    // Numbers are durations in seconds, as in Docket-py; `@` strings are epoch times.
    assert_eq!(json(r#"{"after": 3600}"#), path("after/1h"));
    assert_eq!(
        json(r#"{"after": "@1704164640.0", "before": "@1704165000"}"#),
        path(WIN)
    );
}

#[test]
fn json_errors() {
    let e = json_err(r#"{"hots": "10.0.0.1"}"#);
    assert_eq!((e.clause.as_str(), e.value.as_str()), ("hots", "hots"));
    assert!(e.message.contains("hots"));
    assert_eq!(json_err(r#"{"Host": "10.0.0.1"}"#).clause, "Host"); // case-sensitive keys
    for bad in ["", "{", "not json", "{\"host\": }", "\u{0}"] {
        assert_eq!(json_err(bad).clause, "body", "{bad:?}");
    }
    for bad in ["[]", "\"host\"", "42", "null"] {
        let e = json_err(bad);
        assert_eq!(e.clause, "body", "{bad}");
        assert!(e.message.contains("object"));
    }
    // Wrong types name the field.
    let cases = [
        (r#"{"host": 10}"#, "host"),
        (r#"{"host": [true]}"#, "host"),
        (r#"{"host": {"a": 1}}"#, "host"),
        (r#"{"net": ["10.0.0.0/8", 3]}"#, "net"),
        (r#"{"port": true}"#, "port"),
        (r#"{"port": [[80]]}"#, "port"),
        (r#"{"port": 80.5}"#, "port"),
        (r#"{"port": -1}"#, "port"),
        (r#"{"port": 70000}"#, "port"),
        (r#"{"proto": [6]}"#, "proto"),
        (r#"{"proto": 300}"#, "proto"),
        (r#"{"proto-name": "sctp"}"#, "proto-name"),
        (r#"{"proto-name": "udp", "proto": 6}"#, "proto"),
        (r#"{"proto-name": 6}"#, "proto-name"),
        (r#"{"after": ["5m"]}"#, "after"),
        (r#"{"after": true}"#, "after"),
        (r#"{"after-ago": "2024-01-02T03:04:00Z"}"#, "after-ago"),
        (r#"{"sensor": 1}"#, "sensor"),
        (r#"{"bpf": 1}"#, "bpf"),
        (r#"{"format": ["pcap"]}"#, "format"),
        (r#"{"ignore-weight": "yes"}"#, "ignore-weight"),
        (r#"{"limit-bytes": -1}"#, "limit-bytes"),
        (r#"{"Steno-Limit-Packets": 1.5}"#, "Steno-Limit-Packets"),
        (r#"{"net": "10.0.0.0"}"#, "net"),
        (r#"{"tcp": true}"#, "tcp"),
    ];
    for (body, clause) in cases {
        assert_eq!(json_err(body).clause, clause, "{body}");
    }
    assert_eq!(json_err(r#"{"port": 70000}"#).value, "70000");
    // Error JSON shape.
    let e = json_err(r#"{"port": "66000"}"#);
    assert_eq!(
        e.to_json(),
        serde_json::json!({"error": "port 66000 out of range 1-65535", "clause": "port", "value": "66000"})
    );
    assert_eq!(e.to_string(), "port 66000 out of range 1-65535");
}

#[test]
fn form_fields() {
    let q = form(
        "host=10.0.0.2&host=2001%3Adb8%3A%3A1&net=10.0.0.0%2F8&port=80&port=443&proto-name=tcp\
         &after=2024-01-02T03%3A04%3A00Z&before=2024-01-02T03%3A10%3A00Z&sensor=a&sensor=&bpf=\
         &limit-bytes=&ignore-weight=on&format=pcap",
    );
    assert_eq!(
        q,
        path(&format!(
            "{WIN}/host/10.0.0.2/host/2001:db8::1/net/10.0.0.0/8/port/80/port/443/tcp/sensor/a/ignore-weight/format/pcap"
        ))
    );
    // A checkbox's "on" or any value is on; empty and the spellings of "no" are off.
    for (v, on) in [
        ("on", true),
        ("yes", true),
        ("", false),
        ("false", false),
        ("0", false),
        ("OFF", false),
    ] {
        let q = form(&format!("after=2024-01-02T03%3A04%3A00Z&ignore-weight={v}"));
        assert_eq!(q.ignore_weight, on, "{v:?}");
    }
    // `+` is a space in forms; the bpf keeps it.
    assert_eq!(form("bpf=tcp+port+80").bpf.as_deref(), Some("tcp port 80"));
    let e = parse_form(b"hots=1", now(), &cfg()).unwrap_err();
    assert_eq!(e.clause, "hots");
    let e = parse_form(b"port=0", now(), &cfg()).unwrap_err();
    assert_eq!(e.clause, "port");
    let e = parse_form(b"hots=", now(), &cfg()).unwrap_err();
    assert_eq!(e.clause, "hots", "unknown keys are errors even when empty");
    assert_eq!(form(""), path(""));
}

// ---------------------------------------------------------------- canonical form and ids

#[test]
fn same_request_same_id_across_inputs() {
    let p1 = path(&format!(
        "{WIN}/host/10.0.0.1/host/2001:db8::1/net/10.0.0.0/8/port/80/port/443/tcp/sensor/a/sensor/b\
         /limit-bytes/1MB"
    ));
    let p2 = path(
        "SENSOR/b/Port/443/sensor/a/host/2001:DB8:0:0::1/Before/@1704165000/net/10.1.2.3/255.0.0.0\
         /limit-bytes/1048576/proto/6/host/10.0.0.1/After/2024-01-02T04:04:00%2B01:00/port/80/port/80",
    );
    let j = json(
        r#"{"port": ["443", 80], "host": ["2001:db8::1", "10.0.0.1", "10.0.0.1"],
            "net": ["10.0.0.0/8"], "proto-name": "TCP", "sensor": ["a", "b"],
            "after": "@1704164640", "before": "2024-01-02T03:10:00Z", "Steno-Limit-Bytes": "1 MB"}"#,
    );
    let f = form(
        "sensor=b&sensor=a&port=443&port=80&host=2001:db8::1&host=10.0.0.1&net=10.0.0.0/255.0.0.0\
         &proto=6&after=@1704164640&before=@1704165000&Steno-Limit-Bytes=1024KB",
    );
    for q in [&p2, &j, &f] {
        assert_eq!(q, &p1);
        assert_eq!(q.canonical(), p1.canonical());
        assert_eq!(q.id(), p1.id());
    }
    assert_eq!(
        p1.canonical(),
        "after 2024-01-02T03:04:00Z and before 2024-01-02T03:10:00Z and host 10.0.0.1 and \
         host 2001:db8::1 and net 10.0.0.0/8 and port 80 and port 443 and ip proto 6 | \
         sensors=a,b | limit-bytes=1048576 | limit-packets=- | bpf=- | format=auto"
    );
}

#[test]
fn differences_change_the_id() {
    let base = path(&format!("{WIN}/host/10.0.0.1"));
    let variants = [
        "limit-bytes/1MB",
        "limit-bytes/2MB",
        "limit-packets/10",
        "sensor/a",
        "sensor/b",
        "format/pcapng",
        "bpf/tcp",
        "bpf/udp",
        "port/80",
        "proto/6",
        "host/10.0.0.2",
        "net/10.0.0.0/8",
        "net/10.0.0.0/16",
    ];
    let mut ids = vec![base.id()];
    for v in variants {
        ids.push(path(&format!("{WIN}/host/10.0.0.1/{v}")).id());
    }
    ids.push(path("after/2024-01-02T03:05:00Z/before/2024-01-02T03:10:00Z/host/10.0.0.1").id());
    ids.push(path("after/2024-01-02T03:04:00Z/before/2024-01-02T03:11:00Z/host/10.0.0.1").id());
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "every variant has its own id");
    // A bpf cannot imitate a separator.
    let a = path(&format!("{WIN}/bpf/len%20%7C%201%20%3D%2061"));
    assert_ne!(
        a.canonical(),
        path(&format!("{WIN}/bpf/len%20%3E%201/format/pcapng")).canonical()
    );
    assert!(a.canonical().contains(r#"bpf="len | 1 = 61""#));
}

#[test]
fn job_id_text() {
    let q = path(WIN);
    let id = q.id();
    let text = id.to_string();
    assert_eq!(text.len(), 32);
    assert!(text
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    assert_eq!(text.parse::<JobId>().unwrap(), id);
    assert_eq!(format!("{id:?}"), format!("JobId({text})"));
    // The id is the first 16 bytes of SHA-256 of the canonical string.
    let digest = Sha256::digest(q.canonical().as_bytes());
    assert_eq!(&id.as_bytes()[..], &digest[..16]);
    let ok = "0123456789abcdef0123456789abcdef";
    assert_eq!(ok.parse::<JobId>().unwrap().to_string(), ok);
    for bad in [
        "0123456789ABCDEF0123456789ABCDEF",
        "0123456789abcdef0123456789abcde",
        "0123456789abcdef0123456789abcdef0",
        "../23456789abcdef0123456789abcdef",
        "..",
        "",
        "0123456789abcdef0123456789abcdeg",
        "0123456789abcdef-0123456789abcde",
        "+123456789abcdef0123456789abcdef",
        "0123456789abcdef0123456789abcd\u{e9}",
    ] {
        let e = bad.parse::<JobId>().unwrap_err();
        assert_eq!(e.clause, "id", "{bad}");
    }
}

// ---------------------------------------------------------------- renderings

#[test]
fn stenographer_rendering() {
    let q = path(&format!(
        "{WIN}/port/80/net/10.0.0.0/8/host/10.0.0.1/tcp/sensor/a/limit-packets/3/bpf/udp"
    ));
    assert_eq!(
        q.stenographer(),
        "after 2024-01-02T03:04:00Z and before 2024-01-02T03:10:00Z and host 10.0.0.1 and \
         net 10.0.0.0/8 and port 80 and ip proto 6"
    );
    assert_eq!(
        q.stenographer_widened(120),
        "after 2024-01-02T03:02:00Z and before 2024-01-02T03:12:00Z and host 10.0.0.1 and \
         net 10.0.0.0/8 and port 80 and ip proto 6"
    );
    assert_eq!(q.stenographer_widened(0), q.stenographer());
    // Widening clamps to what RFC 3339 can print.
    let early = path("after/@0/before/@60");
    assert_eq!(
        early.stenographer_widened(u64::MAX),
        "after 1970-01-01T00:00:00Z and before 9999-12-31T23:59:59.999999999Z"
    );
    // Only times: still a valid query; relative input becomes absolute.
    assert_eq!(
        path("after/1h/before/30m").stenographer(),
        "after 2024-01-02T02:04:00Z and before 2024-01-02T02:35:00Z"
    );
}

#[test]
fn bpf_filter_rendering() {
    assert_eq!(path(WIN).bpf_filter(), None);
    assert_eq!(
        path(&format!("{WIN}/sensor/a/limit-bytes/1KB")).bpf_filter(),
        None
    );
    let q = path(&format!(
        "{WIN}/host/10.0.0.2/host/2001:db8::1/net/10.0.0.0/8/port/80/udp/bpf/tcp%5B13%5D%20%26%202%20!%3D%200"
    ));
    assert_eq!(
        q.bpf_filter().unwrap(),
        "host 10.0.0.2 and host 2001:db8::1 and net 10.0.0.0/8 and port 80 and \
         (ip proto 17 or ip6 proto 17) and (tcp[13] & 2 != 0)"
    );
    assert_eq!(
        path(&format!("{WIN}/bpf/icmp%20or%20arp"))
            .bpf_filter()
            .unwrap(),
        "(icmp or arp)"
    );
}

// ---------------------------------------------------------------- round trips

#[test]
fn to_path_round_trip() {
    let samples = [
        WIN.to_owned(),
        String::new(),
        "after/1h30m".to_owned(),
        format!("{WIN}/host/10.0.0.1/host/::ffff:1.2.3.4/host/fe80::1/net/192.168.0.0/255.255.0.0"),
        format!("{WIN}/net/2001:db8::/32/port/1/port/65535/proto/0/sensor/a.b/sensor/Z_-"),
        format!("{WIN}/icmp/limit-bytes/1.5GB/limit-packets/99/format/pcapng"),
        format!(
            "{WIN}/bpf/len%20%2F%202%20%3E%2010%20%2B%201%20and%20tcp%5B13%5D%20%26%202%20!%3D%200"
        ),
        "after/@1704164640.25/before/@1704164700.75".to_owned(),
        "after/0/before/9999-12-31T23:59:00Z".to_owned(),
    ];
    for s in samples {
        let q = path(&s);
        let p = q.to_path();
        // Any "now" will do: to_path writes absolute times.
        let back = parse_path(&p, Timestamp(0), &cfg()).unwrap_or_else(|e| panic!("{p}: {e:?}"));
        assert_eq!(back, q, "{s} -> {p}");
        assert_eq!(back.canonical(), q.canonical());
        assert_eq!(back.to_path(), p);
    }
    // The exact text: epoch seconds, time first, encoded slash in a value.
    let q = path(WIN);
    assert!(q
        .to_path()
        .starts_with("after/@1704164640/before/@1704165000"));
    assert_eq!(
        path(&format!("{WIN}/bpf/net%2010.0.0.0%2F8")).to_path(),
        "after/@1704164640/before/@1704165000/bpf/net%2010.0.0.0%2F8"
    );
}

#[test]
fn duration_and_capacity_units_exact() {
    use super::time::{epoch_text, parse_duration, rfc3339};
    let ns = |s: &str| parse_duration(s, false).unwrap();
    assert_eq!(ns("1us"), 1_000);
    assert_eq!(ns("1.5us"), 1_500);
    assert_eq!(ns("2ms"), 2_000_000);
    assert_eq!(ns("1.2h3.4m5.6s"), 4_529_600_000_000);
    assert_eq!(ns("0.1w"), 60_480_000_000_000);
    assert_eq!(ns("1m1ms"), 60_001_000_000);
    assert_eq!(parse_duration("42", false), None);
    assert_eq!(parse_duration("42", true), Some(42 * NANOS_PER_SEC));
    assert_eq!(parse_duration("", false), None);
    assert_eq!(parse_duration("m", false), None);
    assert_eq!(parse_duration("1.h", false), None);
    assert_eq!(parse_duration("1h-1m", false), None);
    assert_eq!(rfc3339(1_500_000_000), "1970-01-01T00:00:01.5Z");
    assert_eq!(epoch_text(1_500_000_000), "@1.5");
    assert_eq!(epoch_text(-1), "@-1.999999999");
}

mod props {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn any_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
            any::<u128>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

        /// Any parsed query survives to_path → parse_path unchanged, with the same id, and
        /// the order of the clauses in the path does not matter.
        #[test]
        fn to_path_round_trips(
            after in 0i128..200_000_000_000,
            len in 1i128..10_000_000,
            hosts in proptest::collection::vec(any_ip(), 0..4),
            nets in proptest::collection::vec((any_ip(), 0u8..=128), 0..3),
            ports in proptest::collection::vec(1u16..=65535, 0..4),
            proto in proptest::option::of(any::<u8>()),
            sensors in proptest::collection::vec("[A-Za-z0-9_.-]{1,8}", 0..3),
            limit_bytes in proptest::option::of(1u64..u64::MAX),
            limit_packets in proptest::option::of(1u64..u64::MAX),
            bpf in proptest::option::of(proptest::sample::select(vec![
                "tcp", "udp port 53", "net 10.0.0.0/8", "len > 100", "tcp[13] & 2 != 0",
                "icmp or arp", "not ip6", "vlan and host 10.0.0.1",
            ])),
            pcapng in any::<bool>(),
        ) {
            let mut c: Vec<String> = vec![format!("after/@{after}"), format!("before/@{}", after + len)];
            c.extend(hosts.iter().map(|h| format!("host/{h}")));
            for (a, pre) in &nets {
                let pre = if a.is_ipv4() { pre % 33 } else { *pre };
                c.push(format!("net/{a}/{pre}"));
            }
            c.extend(ports.iter().map(|port| format!("port/{port}")));
            // ICMP with ports is refused (see `icmp_has_no_ports`).
            let proto = proto.filter(|p| ports.is_empty() || !matches!(p, 1 | 58));
            c.extend(proto.map(|n| format!("proto/{n}")));
            c.extend(
                sensors
                    .iter()
                    .filter(|s| !s.bytes().all(|b| b == b'.'))
                    .map(|s| format!("sensor/{s}")),
            );
            c.extend(limit_bytes.map(|n| format!("limit-bytes/{n}")));
            c.extend(limit_packets.map(|n| format!("limit-packets/{n}")));
            if let Some(b) = bpf.as_ref().filter(|b| !b.trim().is_empty()) {
                c.push(format!("bpf/{}", utf8_percent_encode(b, PATH_VALUE)));
            }
            if pcapng {
                c.push("format/pcapng".to_owned());
            }
            let q = parse_path(&c.join("/"), now(), &cfg()).unwrap();
            let back = parse_path(&q.to_path(), Timestamp(0), &cfg()).unwrap();
            prop_assert_eq!(&back, &q);
            prop_assert_eq!(back.id(), q.id());
            // The order of the clauses does not matter.
            c.reverse();
            prop_assert_eq!(parse_path(&c.join("/"), now(), &cfg()).unwrap(), q);
        }
    }
}

#[test]
fn a_json_key_given_twice_is_refused_naming_it() {
    let e = json_err(r#"{"host": "10.0.0.1", "port": 80, "host": "10.0.0.2"}"#);
    assert_eq!(e.clause, "host");
    assert!(e.message.contains("twice"), "{}", e.message);
    // A list is how several values are given.
    assert_eq!(json(r#"{"host": ["10.0.0.1", "10.0.0.2"]}"#).hosts.len(), 2);
}

#[test]
fn a_bpf_value_with_multibyte_characters_is_refused_without_a_panic() {
    // Found by fuzzing the front door: `0x` checks sliced a `str` inside a character.
    assert_eq!(form_err("bpf=t%FF%FFcp+port+1").clause, "bpf");
    assert_eq!(path_err("bpf/0%C3%A9").clause, "bpf");
}

// ---------------------------------------------------------------- Stenographer text

#[test]
fn stenographer_text_is_the_same_query_as_the_path() {
    let text = |t: &str| parse_text(t, now(), &cfg()).unwrap_or_else(|e| panic!("{t}: {e:?}"));
    let text_err = |t: &str| parse_text(t, now(), &cfg()).unwrap_err();
    assert_eq!(
        text("host 10.0.0.1 and port 53 && udp and after 2024-01-02T03:04:00Z and before 2024-01-02T03:10:00Z"),
        path(&format!("{WIN}/host/10.0.0.1/port/53/udp"))
    );
    assert_eq!(
        text("net 10.0.0.0 mask 255.0.0.0 and ip proto 6"),
        path("net/10.0.0.0/8/proto/6")
    );
    assert_eq!(text("net 10.0.0.0/8"), path("net/10.0.0.0/8"));
    assert_eq!(text("after 5m ago"), path("after/5m"));
    assert_eq!(
        text("AFTER 3m AGO AND HOST 10.0.0.1"),
        path("after/3m/host/10.0.0.1")
    );
    for (bad, clause) in [
        ("host 10.0.0.1 or host 10.0.0.2", "query"),
        ("(host 10.0.0.1)", "("),
        ("not host 10.0.0.1", "not"),
        ("host", "host"),
        ("host 10.0.0.1 and", "query"),
        ("host 10.0.0.1 host 10.0.0.2", "query"),
        ("port 70000", "port"),
        ("after yesterday", "after"),
    ] {
        assert_eq!(text_err(bad).clause, clause, "{bad}");
    }
}

#[test]
fn icmp_has_no_ports() {
    for p in [
        "icmp/port/8",
        "proto/1/port/5",
        "proto/58/port/128",
        "port/3/icmp",
    ] {
        let e = path_err(p);
        assert_eq!(e.clause, "port", "{p}");
        assert!(e.message.contains("ICMP has no ports"), "{}", e.message);
    }
    assert_eq!(path("tcp/port/8").proto, Some(6));
}
