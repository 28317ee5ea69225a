//! Docket-py and ROCK habits against a running gateway, with the clients their users have
//! (curl for scripts, a browser's `Accept` for Kibana links): the routes under `api/` and at
//! the top, Docket-py's state strings there, the times as Docket-py read them (a bare number
//! is a duration; `@` epoch seconds; zone-less times are UTC), exact absolute windows
//! (oracle: tcpdump + editcap + mergecap over the same files), the raw Stenographer grammar,
//! `Steno-Limit-*` headers, 405 with `Allow`, and ICMP ports refused.

mod common;

use std::path::PathBuf;

use common::server::{oracle, Server};
use common::{corpus, run_ok};
use tempfile::TempDir;

fn sensors() -> Vec<(&'static str, PathBuf)> {
    vec![("merge", corpus().join("merge"))]
}

/// The tls2 trace's busiest ten seconds, and the same as epoch seconds.
const TEN_S: &str = "after/2021-01-05T06:56:30Z/before/2021-01-05T06:56:40Z";

/// Whether a JSON list of jobs holds the job `id`.
fn lists(jobs: &serde_json::Value, id: &str) -> bool {
    jobs.as_array()
        .is_some_and(|a| a.iter().any(|j| j["id"] == id))
}

fn packets(file: &std::path::Path) -> usize {
    let out = run_ok(std::process::Command::new("tcpdump").arg("-nr").arg(file));
    out.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count()
}

#[test]
fn an_absolute_window_is_exact_and_a_bare_number_is_a_duration() {
    let server = Server::start(&sensors(), "time_window = 60");
    let work = TempDir::new().unwrap();
    let after = common::server::epoch("2021-01-05T06:56:30Z");
    let before = common::server::epoch("2021-01-05T06:56:40Z");
    let want = oracle(&[corpus().join("merge")], "", after, before, work.path()).unwrap();
    let ours = server.fetch(&format!("q/{TEN_S}/pcap"), work.path());
    common::server::assert_same_packets(&ours, &want, "ten seconds, RFC 3339");
    assert!(
        packets(&ours) > 0 && packets(&ours) < 3_970,
        "{}",
        packets(&ours)
    );
    // The same with `@` epoch seconds and with zone-less times (UTC): the same job.
    let id = server.job_id(&format!("q/{TEN_S}"));
    assert_eq!(
        server.job_id(&format!("q/after/@{after}/before/@{before}")),
        id
    );
    assert_eq!(
        server.job_id("q/after/2021-01-05T06:56:30/before/2021-01-05%2006:56:40"),
        id
    );
    // A bare number is seconds before now (Docket-py): the last hour, quantised.
    let j = server.json("q/after/3600");
    let q = j["query"].as_str().unwrap();
    let start = q.split_whitespace().nth(1).unwrap();
    let start = common::server::epoch(start);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now - 3600 - 120..=now - 3600).contains(&start), "{q}");
    // An epoch without its `@` is refused, saying so.
    let (code, body) = server.get(&format!("q/after/{after}"), &[]);
    assert_eq!(code, 400);
    let e: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(e["clause"], "after");
    assert!(e["error"].as_str().unwrap().contains('@'), "{e}");
}

#[test]
fn rock_routes_answer_under_api_with_docket_py_states() {
    let server = Server::start(&sensors(), "");
    let work = TempDir::new().unwrap();
    // A Kibana "Query PCAP" link: after only, trailing slash.
    let kibana = "api/uri/host/2620:1ec:c11::200/port/443/after/2021-01-05T06:55:00Z/";
    // A browser lands on the job's page…
    let (code, _) = server.get(
        kibana,
        &[
            "-H",
            "Accept: text/html,application/xhtml+xml,*/*;q=0.8",
            "-o",
            "/dev/null",
        ],
    );
    assert_eq!(code, 303);
    let o = server
        .curl()
        .args([
            "-o",
            "/dev/null",
            "-w",
            "%{redirect_url}",
            "-H",
            "Accept: text/html",
        ])
        .arg(server.url(kibana))
        .output()
        .unwrap();
    let location = String::from_utf8(o.stdout).unwrap();
    assert!(location.contains("/ui/job/"), "{location}");
    let (code, page) = server.get(&location.replacen(&server.url(""), "", 1), &[]);
    assert_eq!(code, 200);
    assert!(String::from_utf8_lossy(&page).contains("<html"));
    // …a script gets the job JSON, with Docket-py's state strings.
    let job = server.json(kibana);
    let id = job["id"].as_str().unwrap().to_owned();
    server.wait_final(&id);
    let st = server.json(&format!("api/status/{id}"));
    assert_eq!(st[&id]["state"], "Completed", "{st}");
    assert_eq!(st[&id]["docket_state"], "Completed");
    // Every Docket-py route answers under api/ and at the top.
    for prefix in ["", "api/"] {
        let ids = server.json(&format!("{prefix}ids"));
        assert!(
            ids.as_array().unwrap().iter().any(|v| v == id.as_str()),
            "{ids}"
        );
        let urls = server.json(&format!("{prefix}urls/{id}"));
        assert!(urls[&id].as_str().unwrap().contains(&id));
        let jobs = server.json(&format!("{prefix}jobs"));
        assert!(jobs
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["id"] == id.as_str()));
        assert!(server.json(&format!("{prefix}stats"))["merge"].is_object());
        assert_eq!(server.json(&format!("{prefix}cleanup")), "Cleanup queued");
        assert_eq!(server.json(&format!("{prefix}clean")), "Cleanup queued");
        // Id lists: Docket-py's separators.
        for sep in [",", "%20", "%09", ";", "+"] {
            let l = server.json(&format!("{prefix}ids/{id}{sep}{}", "0".repeat(32)));
            assert_eq!(l.as_array().unwrap().len(), 1, "{sep}");
        }
        // The capture, as Docket-py named it.
        for path in [
            format!("{prefix}{id}/merged.pcap"),
            format!("{prefix}results/{id}/merged.pcap"),
        ] {
            let f = server.fetch(&path, work.path());
            assert!(packets(&f) > 0, "{path}");
        }
        // Raw Stenographer queries: GET raw/ (`+` a space) and POST query/ (curl -d).
        let raw = server.json(&format!(
            "{prefix}raw/host+2620:1ec:c11::200+and+port+443+and+after+2021-01-05T06:55:00Z"
        ));
        let posted = {
            let (code, body) = server.get(
                &format!("{prefix}query/"),
                &[
                    "-d",
                    "host 2620:1ec:c11::200 and port 443 and after 2021-01-05T06:55:00Z",
                ],
            );
            assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
            serde_json::from_slice::<serde_json::Value>(&body).unwrap()
        };
        assert_eq!(raw["id"], id.as_str(), "{raw}");
        assert_eq!(posted["id"], id.as_str());
        // POST find: the history, by clause.
        let (code, body) = server.get(
            &format!("{prefix}find"),
            &["-d", "host=2620:1ec:c11::200&port=443"],
        );
        assert_eq!(code, 200);
        let found: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(lists(&found, &id), "{found}");
        let (_, body) = server.get(&format!("{prefix}find"), &["-d", "port=444"]);
        let none: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(none.is_array() && !lists(&none, &id), "{none}");
    }
    // A Partial job lists as `Completed` under api/, and api/'s own state names filter.
    assert!(lists(&server.json("api/jobs?state=Completed"), &id));
    assert!(server.json("api/jobs?state=Created").is_array());
    // A search with one end of time only: the other end is open.
    for body in ["before=2030-01-01T00:00:00Z", "after=2000-01-01T00:00:00Z"] {
        let (code, found) = server.get("find", &["-d", body]);
        assert_eq!(code, 200, "{body}: {}", String::from_utf8_lossy(&found));
        let found: serde_json::Value = serde_json::from_slice(&found).unwrap();
        assert!(lists(&found, &id), "{body}");
    }
    // A raw query in JSON: one `query` key, once.
    for bad in [
        r#"{"query": "host 1.2.3.4", "query": "port 53"}"#,
        r#"{"query": "host 1.2.3.4", "foo": 1}"#,
        r#"{"query": 5}"#,
    ] {
        let (code, _) = server.get(
            "query/",
            &["-H", "Content-Type: application/json", "-d", bad],
        );
        assert_eq!(code, 400, "{bad}");
    }
    // Ids: upper case is the same id; a repeated id is listed once.
    let upper = id.to_ascii_uppercase();
    let l = server.json(&format!("ids/{upper},{id},{id}"));
    assert_eq!(l.as_array().unwrap().len(), 1, "{l}");
    // A client that refuses HTML (q=0), or prefers JSON, gets JSON.
    for accept in [
        "text/html;q=0, */*",
        "text/html;q=0.1, application/json;q=0.9",
    ] {
        let (code, _) = server.get(kibana, &["-H", &format!("Accept: {accept}")]);
        assert_eq!(code, 200, "{accept}");
    }
    // `or` is not guessed at.
    let (code, body) = server.get("api/raw/host+10.0.0.1+or+host+10.0.0.2", &[]);
    assert_eq!(code, 400, "{}", String::from_utf8_lossy(&body));
}

#[test]
fn limits_as_headers_wrong_methods_and_icmp_ports() {
    let server = Server::start(&sensors(), "");
    let work = TempDir::new().unwrap();
    // Steno-Limit-Packets as a header, as Docket-py documented it.
    let (code, body) = server.get(
        &format!("q/{TEN_S}/pcap"),
        &["-H", "Steno-Limit-Packets: 7"],
    );
    assert_eq!(code, 200);
    let f = work.path().join("limited.pcap");
    std::fs::write(&f, &body).unwrap();
    assert_eq!(packets(&f), 7);
    let (code, _) = server.get(
        &format!("q/{TEN_S}/limit-packets/8"),
        &["-H", "Steno-Limit-Packets: 7"],
    );
    assert_eq!(code, 400);
    let (code, _) = server.get(
        &format!("q/{TEN_S}"),
        &[
            "-H",
            "Steno-Limit-Packets: 7",
            "-H",
            "Steno-Limit-Packets: 6",
        ],
    );
    assert_eq!(code, 400, "a header given twice");
    // `format/pcap` is a clause, not the capture suffix.
    let j = server.json(&format!("q/sensor/merge/{TEN_S}/format/pcap"));
    assert!(j["id"].is_string(), "{j}");
    // Summed capacities.
    let j = server.json(&format!("q/{TEN_S}/limit-bytes/0.5MB%201KB"));
    assert!(j["query"].is_string());
    // A wrong method: 405 with Allow.
    for (method, path, allow) in [
        ("DELETE", "status", "GET, HEAD"),
        ("PUT", "q", "GET, HEAD, POST"),
        ("GET", "find", "POST"),
        ("POST", "jobs", "GET, HEAD"),
    ] {
        let o = server
            .curl()
            .args(["-o", "/dev/null", "-D", "-", "-X", method])
            .arg(server.url(path))
            .output()
            .unwrap();
        let head = String::from_utf8_lossy(&o.stdout).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 405"), "{method} {path}: {head}");
        assert!(
            head.contains(&format!("allow: {}", allow.to_ascii_lowercase())),
            "{head}"
        );
    }
    // /stats: free bytes and inodes of the spool's file system, as df sees them.
    let st = server.json("stats");
    let inodes = st["docket"]["Free space"][1]
        .as_u64()
        .expect("an inode figure");
    let df = run_ok(
        std::process::Command::new("df")
            .args(["--output=iavail"])
            .arg(server.dir.path()),
    );
    let df: u64 = String::from_utf8_lossy(&df)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        inodes.abs_diff(df) < 10_000,
        "/stats {inodes} inodes, df {df}"
    );
    // ICMP has no ports: said, not silently empty.
    let (code, body) = server.get("q/icmp/port/8", &[]);
    assert_eq!(code, 400);
    let e: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(e["clause"], "port");
}

/// Response headers of a GET with curl (`-D -`), extra arguments first.
fn head_of(server: &Server, path: &str, extra: &[&str]) -> String {
    let o = server
        .curl()
        .args(["-o", "/dev/null", "-D", "-"])
        .args(extra)
        .arg(server.url(path))
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A header's value (name in lower case), as sent.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        })
        .map(str::trim)
}

#[test]
fn a_failure_is_visible_in_the_pipe_and_downloads_behave() {
    let work = TempDir::new().unwrap();
    let gone = work.path().join("gone");
    std::fs::create_dir(&gone).unwrap();
    let server = Server::start(
        &[("merge", corpus().join("merge")), ("gone", gone.clone())],
        "",
    );
    // The directory vanishes: that sensor fails on every query.
    std::fs::remove_dir(&gone).unwrap();
    let url = |p: &str| server.url(p);
    // Every upstream failed before a byte: 502 and the reasons, and curl -f says so.
    let (code, body) = server.get(&format!("q/sensor/gone/{TEN_S}/pcap"), &[]);
    assert_eq!(code, 502, "{}", String::from_utf8_lossy(&body));
    let e: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(e["upstreams"][0]["name"], "gone", "{e}");
    assert!(e["upstreams"][0]["error"].is_string());
    let piped = std::process::Command::new("bash")
        .args(["-o", "pipefail", "-c"])
        .arg(format!(
            "curl -fsSN --max-time 60 '{}' | tshark -r - -c 1",
            url("q/sensor/gone/after/2021-01-05T06:56:30Z/before/2021-01-05T06:56:41Z/pcap")
        ))
        .output()
        .unwrap();
    assert_eq!(piped.status.code(), Some(22), "{piped:?}");
    // Wireshark's way in (`wireshark -k -i -`: dumpcap reading a pipe), as tshark -i - does
    // it: no capture, and a failed pipeline.
    let live = std::process::Command::new("bash")
        .args(["-o", "pipefail", "-c"])
        .arg(format!(
            "curl -fsSN --max-time 60 '{}' | timeout 60 tshark -i - -q",
            url("q/sensor/gone/after/2021-01-05T06:56:30Z/before/2021-01-05T06:56:42Z/pcap")
        ))
        .output()
        .unwrap();
    assert!(!live.status.success(), "{live:?}");
    assert!(
        String::from_utf8_lossy(&live.stderr).contains("0 packets captured"),
        "{live:?}"
    );
    let said = String::from_utf8_lossy(&piped.stderr);
    assert!(said.contains("502"), "{said}");
    // Some failed: the others' packets (tcpdump + editcap + mergecap over them), then the
    // state in a trailer.
    let out = work.path().join("partial.pcap");
    let o = server
        .curl()
        .args(["-D", "-", "-H", "TE: trailers", "-o"])
        .arg(&out)
        .arg(url(&format!("q/{TEN_S}/pcap")))
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(header(&head, "docket-state"), Some("Partial"), "{head}");
    let after = common::server::epoch("2021-01-05T06:56:30Z");
    let before = common::server::epoch("2021-01-05T06:56:40Z");
    let want = oracle(&[corpus().join("merge")], "", after, before, work.path()).unwrap();
    common::server::assert_same_packets(&out, &want, "partial");
    // And through a pipe into a live capture, as Wireshark reads it: every packet.
    let live = std::process::Command::new("bash")
        .args(["-o", "pipefail", "-c"])
        .arg(format!(
            "curl -fsSN --max-time 60 '{}' | timeout 60 tshark -i - -q -w '{}'",
            url(&format!("q/{TEN_S}/pcap")),
            work.path().join("live.pcapng").display()
        ))
        .output()
        .unwrap();
    assert!(live.status.success(), "{live:?}");
    assert_eq!(packets(&work.path().join("live.pcapng")), packets(&want));
    // Complete now: validators, conditional requests, ranges, HEAD.
    let id = server.job_id(&format!("q/{TEN_S}"));
    server.wait_final(&id);
    let file = format!("{id}/merged.pcap");
    let h = head_of(&server, &file, &[]);
    let etag = header(&h, "etag").unwrap().to_owned();
    let modified = header(&h, "last-modified").unwrap().to_owned();
    // Reading it again, a second later, changes neither validator (a read marks the file
    // used for the cleanup; Last-Modified is when the file was made).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let again = head_of(&server, &file, &[]);
    assert_eq!(header(&again, "last-modified"), Some(modified.as_str()));
    assert_eq!(header(&again, "etag"), Some(etag.as_str()));
    let len: u64 = header(&h, "content-length").unwrap().parse().unwrap();
    assert_eq!(len, std::fs::metadata(&out).unwrap().len());
    assert_eq!(
        header(&head_of(&server, &file, &["-I"]), "content-length"),
        Some(len.to_string().as_str())
    );
    for cond in [
        format!("If-None-Match: {etag}"),
        format!("If-Modified-Since: {modified}"),
    ] {
        let h = head_of(&server, &file, &["-H", &cond]);
        assert!(h.starts_with("HTTP/1.1 304"), "{cond}: {h}");
    }
    let h = head_of(&server, &file, &["-H", "If-None-Match: \"other\""]);
    assert!(h.starts_with("HTTP/1.1 200"), "{h}");
    let h = head_of(
        &server,
        &file,
        &[
            "-H",
            "Range: bytes=0-99",
            "-H",
            &format!("If-Range: {etag}"),
        ],
    );
    assert!(h.starts_with("HTTP/1.1 206"), "{h}");
    let h = head_of(
        &server,
        &file,
        &["-H", "Range: bytes=0-99", "-H", "If-Range: \"stale\""],
    );
    assert!(h.starts_with("HTTP/1.1 200"), "{h}");
    let h = head_of(&server, &file, &["-H", "Range: bytes=0-9,20-29"]);
    assert!(h.starts_with("HTTP/1.1 200"), "multi-range: {h}");
    // pcapng is named and typed as such.
    let h = head_of(
        &server,
        &format!("q/sensor/merge/{TEN_S}/format/pcapng/pcap"),
        &[],
    );
    assert_eq!(
        header(&h, "content-type"),
        Some("application/x-pcapng"),
        "{h}"
    );
    assert!(
        header(&h, "content-disposition")
            .unwrap()
            .contains(".pcapng"),
        "{h}"
    );
}

/// `format/pcap` is classic pcap or a 409 naming the clause; without it, mixed link types
/// give pcapng. The `Docket-State` trailer reaches an HTTP/2 client (over TLS, by ALPN).
#[test]
fn format_pcap_is_classic_or_refused_and_http2_gets_the_trailer() {
    let gone = TempDir::new().unwrap();
    std::fs::create_dir(gone.path().join("d")).unwrap();
    let s = common::front::tls_server(
        &[
            ("merge", corpus().join("merge")),
            ("protocols", corpus().join("protocols")),
            ("gone", gone.path().join("d")),
        ],
        "",
    );
    std::fs::remove_dir(gone.path().join("d")).unwrap();
    let user = common::front::user("alice");
    let all = "after/2000-01-01T00:00:00Z/before/2030-01-01T00:00:00Z";
    let (code, body) = s.get(
        &format!("q/sensor/merge/sensor/protocols/{all}/format/pcap/pcap"),
        &["-u", &user],
    );
    assert_eq!(code, 409, "{}", String::from_utf8_lossy(&body));
    let e: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(e["clause"], "format");
    // One link type: classic pcap, as capinfos reads it.
    let work = TempDir::new().unwrap();
    let (code, body) = s.get(
        &format!("q/sensor/merge/{all}/format/pcap/pcap"),
        &["-u", &user],
    );
    assert_eq!(code, 200);
    let f = work.path().join("classic");
    std::fs::write(&f, &body).unwrap();
    let info = run_ok(std::process::Command::new("capinfos").arg("-t").arg(&f));
    assert!(
        String::from_utf8_lossy(&info).contains("pcap")
            && !String::from_utf8_lossy(&info).contains("pcapng"),
        "{}",
        String::from_utf8_lossy(&info)
    );
    // Mixed, without format: pcapng, typed and named so.
    let h = head_of(
        &s,
        &format!("q/sensor/merge/sensor/protocols/{all}/pcap"),
        &["-u", &user],
    );
    assert_eq!(
        header(&h, "content-type"),
        Some("application/x-pcapng"),
        "{h}"
    );
    // HTTP/2: the final state as a trailer (a sensor failed: Partial).
    let o = s
        .curl()
        .args(["--http2", "-u", &user, "-D", "-", "-o", "/dev/null"])
        .arg(s.url(&format!("q/sensor/merge/sensor/gone/{TEN_S}/pcap")))
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(head.starts_with("HTTP/2 200"), "{head}");
    assert_eq!(header(&head, "docket-state"), Some("Partial"), "{head}");
}
