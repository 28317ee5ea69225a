//! The gateway end to end on the embedded backend: the real `docket serve` process, real HTTP
//! over loopback with curl, real files. Oracle for results: `tcpdump -r FILE -w - FILTER` per
//! file, time-gated by `editcap -A/-B`, merged by `mergecap`, compared packet by packet as
//! tshark reads both.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::server::{assert_same_packets, epoch, oracle, rand_suffix, spool_files, Server};
use common::{corpus, run_ok};
use tempfile::TempDir;

/// A small tmpfs this test mounts (a real file system that really fills up), unmounted on
/// drop. The suite runs as root; where mounting is forbidden the test says so and skips.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .unwrap();
        if !o.status.success() {
            eprintln!(
                "SKIPPED: cannot mount a tmpfs here ({}); this test needs root",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            return None;
        }
        Some(Tmpfs(at.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn sensors() -> Vec<(&'static str, PathBuf)> {
    vec![
        ("merge", corpus().join("merge")),
        ("protocols", corpus().join("protocols")),
    ]
}

#[test]
fn results_equal_tcpdump_editcap_mergecap_for_a_set_of_queries() {
    let server = Server::start(&sensors(), "");
    let work = TempDir::new().unwrap();
    let both: Vec<PathBuf> = sensors().into_iter().map(|s| s.1).collect();
    let merge_only = vec![corpus().join("merge")];
    let cases: Vec<(&str, &str, &str, &str, &[PathBuf])> = vec![
        (
            "host/2620:1ec:c11::200/port/443",
            "host 2620:1ec:c11::200 and port 443",
            "2021-01-05T06:55:00Z",
            "2021-01-05T07:00:00Z",
            &both,
        ),
        // A tight window inside the captures, an IPv6 net.
        (
            "net/2601:647:4b02::/48",
            "net 2601:647:4b02::/48",
            "2021-01-05T06:56:00Z",
            "2021-01-05T06:57:00Z",
            &both,
        ),
        // Dotted mask, protocol keyword, the natural pair.
        (
            "net/10.0.0.0/255.0.0.0/tcp/port/80",
            "net 10.0.0.0/8 and (ip proto 6 or ip6 proto 6) and port 80",
            "2014-10-19T19:15:00Z",
            "2014-10-19T19:20:00Z",
            &both,
        ),
        // Everything UDP at the outermost layer (tcpdump's reading) over a wide window, in the
        // VLAN/MPLS/tunnel files. (The structured `udp` also looks inside tunnels: it is
        // checked against tshark in tests/clauses.rs.)
        (
            "bpf/udp",
            "udp",
            "2000-01-01T00:00:00Z",
            "2030-01-01T00:00:00Z",
            &both,
        ),
        // A sensor restriction and a raw BPF clause, URL-encoded.
        (
            "sensor/merge/bpf/ip6%20and%20greater%201000",
            "(ip6 and greater 1000)",
            "2021-01-05T06:55:00Z",
            "2021-01-05T07:00:00Z",
            &merge_only,
        ),
        // No filter at all: the whole window.
        (
            "",
            "",
            "2021-01-05T06:56:00Z",
            "2021-01-05T06:57:00Z",
            &both,
        ),
    ];
    for (clauses, filter, after, before, dirs) in cases {
        let path = format!("q/{clauses}/after/{after}/before/{before}/pcap").replace("q//", "q/");
        let (code, body) = server.get(&path, &[]);
        assert_eq!(code, 200, "{path}: {}", String::from_utf8_lossy(&body));
        let ours = work.path().join(format!("ours-{}", rand_suffix()));
        std::fs::write(&ours, &body).unwrap();
        match oracle(dirs, filter, epoch(after), epoch(before), work.path()) {
            Some(want) => assert_same_packets(&ours, &want, &path),
            None => panic!("{path}: the oracle finds no packets; choose a query that has some"),
        }
    }
}

/// An absolute window is exact, as asked: 06:56:10–06:56:30 is those twenty seconds (the
/// packets gated to them are checked against the oracle in the test above). Relative times are
/// widened to whole minutes (the dedup quantum), so a "last hour" asked twice within a minute is
/// one job.
#[test]
fn absolute_windows_are_exact_and_relative_ones_quantised() {
    let server = Server::start(&sensors(), "");
    let j = server.json("q/after/2021-01-05T06:56:10Z/before/2021-01-05T06:56:30Z");
    assert!(
        j["query"]
            .as_str()
            .unwrap()
            .starts_with("after 2021-01-05T06:56:10Z and before 2021-01-05T06:56:30Z"),
        "{j}"
    );
    let k = server.json("q/after/2021-01-05T06:56:00Z/before/2021-01-05T06:57:00Z");
    assert_ne!(j["id"], k["id"]);
    let r = server.json("q/after/1h/before/1m");
    let q = r["query"].as_str().unwrap();
    for t in q.split(" and ").take(2) {
        assert!(t.ends_with(":00Z"), "{q}");
    }
}

#[test]
fn twenty_identical_requests_share_one_job_and_get_identical_bytes() {
    let server = Server::start(&[("bulk", corpus().join("bulk"))], "");
    let path = "q/after/2023-06-01T12:00:00Z/before/2023-06-01T12:20:00Z/pcap";
    let dir = TempDir::new().unwrap();
    let children: Vec<(Child, PathBuf)> = (0..20)
        .map(|i| {
            let out = dir.path().join(format!("c{i}"));
            let c = Command::new("curl")
                .args(["-sS", "-o"])
                .arg(&out)
                .arg(server.url(path))
                .spawn()
                .unwrap();
            (c, out)
        })
        .collect();
    let mut bodies = Vec::new();
    for (mut c, out) in children {
        assert!(c.wait().unwrap().success());
        bodies.push(std::fs::read(out).unwrap());
    }
    assert!(bodies[0].len() > 12_000_000, "the whole bulk trace");
    assert!(
        bodies.iter().all(|b| *b == bodies[0]),
        "identical byte streams"
    );
    let jobs = server.json("jobs");
    assert_eq!(jobs.as_array().unwrap().len(), 1, "one job: {jobs}");
    // The result equals the bulk trace itself (the window covers it all).
    let ours = dir.path().join("ours");
    std::fs::write(&ours, &bodies[0]).unwrap();
    assert_same_packets(
        &ours,
        &corpus().join("bulk/mix-19-real-captures-10min.pcap"),
        "bulk",
    );
    // A repeat is served from the spool: a complete file with its length, and ranges.
    let id = jobs[0]["id"].as_str().unwrap().to_owned();
    let st = server.wait_final(&id);
    assert_eq!(st["state"], "Completed");
    let (code, again) = server.get(path, &[]);
    assert_eq!(code, 200);
    assert!(again == bodies[0]);
    let (code, head) = server.get(&format!("{id}/merged.pcap"), &["-r", "0-99"]);
    assert_eq!(code, 206);
    assert!(head[..] == bodies[0][..100]);
    let (code, tail) = server.get(&format!("{id}/merged.pcap"), &["-r", "1000-"]);
    assert_eq!(code, 206);
    assert!(tail[..] == bodies[0][1000..]);
}

#[test]
fn bad_requests_get_400_naming_the_clause() {
    let server = Server::start(&sensors(), "");
    for (path, clause) in [
        ("q/bogus/1", "bogus"),
        ("q/host", "host"),
        ("q/host/10.0.0.300", "host"),
        ("q/port/0", "port"),
        ("q/port/65536", "port"),
        ("q/port/abc", "port"),
        ("q/after/yesterday-ish", "after"),
        ("q/net/10.0.0.0/33", "net"),
        ("q/net/2001:db8::/129", "net"),
        ("q/net/10.0.0.0/255.0.255.0", "net"),
        ("q/sensor/nosuch", "sensor"),
        // A typo in raw BPF, and text that would escape the parentheses it is wrapped in.
        ("q/bpf/hots%2010.0.0.1", "bpf"),
        ("q/host/10.0.0.1/bpf/tcp)%20or%20(udp", "bpf"),
    ] {
        let (code, body) = server.get(path, &[]);
        assert_eq!(code, 400, "{path}");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["clause"], clause, "{path}: {v}");
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    // JSON: unknown key, bad JSON; an oversized body is refused before parsing.
    for (body, clause) in [
        (r#"{"bogus": 1}"#, "bogus"),
        ("{not json", "body"),
        (r#"{"port": 66000}"#, "port"),
    ] {
        let (code, resp) = server.get(
            "q",
            &[
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                body,
            ],
        );
        assert_eq!(code, 400, "{body}");
        let v: serde_json::Value = serde_json::from_slice(&resp).unwrap();
        assert_eq!(v["clause"], clause, "{body}: {v}");
    }
    let big = "x".repeat(100_000);
    let (code, _) = server.get(
        "q",
        &[
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &big,
        ],
    );
    assert_eq!(code, 413);
}

#[test]
fn url_json_and_form_of_one_query_are_one_job() {
    let server = Server::start(&sensors(), "");
    let a = server.json(
        "q/port/443/host/2620:1ec:c11::200/after/2021-01-05T06:55:00Z/before/2021-01-05T07:00:00Z",
    );
    let (code, b) = server.get(
        "q",
        &[
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            r#"{"host": ["2620:1EC:C11:0::200"], "port": "443", "after": "2021-01-05T07:55:00+01:00", "before": "@1609830000"}"#,
        ],
    );
    assert_eq!(code, 200);
    let b: serde_json::Value = serde_json::from_slice(&b).unwrap();
    let (code, c) = server.get(
        "q",
        &["--data", "port=443&host=2620:1ec:c11::200&after=2021-01-05T06:55:00Z&before=2021-01-05T07:00:00Z"],
    );
    assert_eq!(code, 200);
    let c: serde_json::Value = serde_json::from_slice(&c).unwrap();
    assert_eq!(a["id"], b["id"]);
    assert_eq!(a["id"], c["id"]);
    assert!(a["query"]
        .as_str()
        .unwrap()
        .starts_with("after 2021-01-05T06:55:00Z and before"));
}

#[test]
fn an_empty_result_is_a_valid_capture_and_the_job_says_no_packets() {
    let server = Server::start(&sensors(), "");
    let path = "q/host/192.0.2.77/after/2021-01-05T06:55:00Z/before/2021-01-05T07:00:00Z/pcap";
    let (code, body) = server.get(path, &[]);
    assert_eq!(code, 200);
    let dir = TempDir::new().unwrap();
    let f = dir.path().join("empty.pcap");
    std::fs::write(&f, &body).unwrap();
    let info = String::from_utf8(run_ok(Command::new("capinfos").arg("-c").arg(&f))).unwrap();
    assert!(info.contains("Number of packets:   0"), "{info}");
    // A window where no file has data declares nothing: still a capture tcpdump reads.
    let (code, body) = server.get(
        "q/after/2001-01-01T00:00:00Z/before/2001-01-01T00:01:00Z/pcap",
        &[],
    );
    assert_eq!(code, 200);
    let f = dir.path().join("nothing.pcap");
    std::fs::write(&f, &body).unwrap();
    run_ok(Command::new("tcpdump").arg("-r").arg(&f));
    let jobs = server.json("jobs");
    let id = jobs
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["query"].as_str().unwrap().contains("host 192.0.2.77"))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let st = server.wait_final(&id);
    assert_eq!(st["state"], "Completed");
    assert_eq!(st["no_packets"], true);
    assert!(st["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["msg"] == "Completed. no packets returned"));
}

#[test]
fn the_prefix_redirects_and_unknown_ids_are_refused() {
    let server = Server::start(&sensors(), "");
    let bare = server.base.trim_end_matches('/').to_owned();
    let o = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{redirect_url}",
        ])
        .arg(&bare)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.starts_with("301 ") && out.ends_with("/app/docket/"),
        "{out}"
    );
    for bad in [
        "..%2f..%2fetc%2fpasswd/merged.pcap",
        "0123/merged.pcap",
        "ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ/merged.pcap",
    ] {
        let (code, _) = server.get(bad, &[]);
        assert_eq!(code, 404, "{bad}");
    }
}

/// A real full disk: the spool is a 1 MiB tmpfs this test mounts. The job fails, the client's
/// transfer is visibly truncated (curl exit 18), no file is left as complete, the server still
/// answers.
#[test]
fn a_full_disk_mid_job_streams_on_to_the_client_and_leaves_no_file() {
    let dir = TempDir::new().unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    let Some(_guard) = Tmpfs::mount(&spool, "1m") else {
        return;
    };
    let work = TempDir::new().unwrap();
    let server = Server::start_in(dir, &[("bulk", corpus().join("bulk"))], "");
    let (after, before) = ("2023-06-01T12:00:00Z", "2023-06-01T12:20:00Z");
    let expected = bulk_oracle(after, before, work.path());
    let path = format!("q/after/{after}/before/{before}");
    // The disk fills after 1 MiB: the client attached still gets the whole capture.
    let (code, body) = server.get(&format!("{path}/pcap"), &[]);
    assert_eq!(code, 200);
    let ours = work.path().join("ours.pcap");
    std::fs::write(&ours, &body).unwrap();
    assert!(body.len() > 1 << 20, "the result is larger than the disk");
    assert_same_packets(&ours, &expected, "streamed past a full disk");
    let id = server.job_id(&path);
    let status = server.wait_final(&id);
    assert_eq!(status["state"], "Completed", "{status:#}");
    assert!(
        status["events"].to_string().contains("not kept"),
        "{status:#}"
    );
    // Nothing left in the spool, complete-looking or not.
    let leftovers = spool_files(&spool);
    assert!(
        leftovers.is_empty(),
        "nothing left in the spool: {leftovers:?}"
    );
    // The download link never serves something else than the whole capture.
    let (code, body) = server.get(&format!("{id}/merged.pcap"), &[]);
    if code == 200 {
        std::fs::write(&ours, &body).unwrap();
        assert_same_packets(&ours, &expected, "the link after the job");
    } else {
        assert_eq!(code, 410);
    }
    assert_eq!(server.get("healthz", &[]).0, 200);
}

#[test]
fn without_a_spool_clients_get_the_stream_and_nothing_is_kept() {
    let work = TempDir::new().unwrap();
    let server = Server::start(&[("bulk", corpus().join("bulk"))], "spool = false");
    let (after, before) = ("2023-06-01T00:00:00Z", "2023-06-02T00:00:00Z");
    let expected = bulk_oracle(after, before, work.path());
    let url = server.url(&format!("q/after/{after}/before/{before}/pcap"));
    // A slow client (it paces the job) and, a moment later, a fast one: either joins or gets
    // a job of its own (once the first bytes have left the feed); both get everything.
    let slow_out = work.path().join("slow.pcap");
    let mut slow = Command::new("curl")
        .args(["-sS", "--fail", "--limit-rate", "4M", "-o"])
        .arg(&slow_out)
        .arg(&url)
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let fast_out = work.path().join("fast.pcap");
    let fast = Command::new("curl")
        .args(["-sS", "--fail", "-o"])
        .arg(&fast_out)
        .arg(&url)
        .status()
        .unwrap();
    assert!(fast.success());
    assert!(slow.wait().unwrap().success());
    assert_same_packets(&fast_out, &expected, "fast client");
    assert_same_packets(&slow_out, &expected, "slow client");
    let files = spool_files(&server.dir.path().join("spool"));
    assert!(files.is_empty(), "nothing written: {files:?}");
}

#[test]
fn kill_9_mid_job_then_restart_starts_afresh() {
    // A directory large enough that the job takes a while: the bulk trace repeated (time-
    // shifted copies appended by mergecap).
    let data = TempDir::new().unwrap();
    let bulk = corpus().join("bulk/mix-19-real-captures-10min.pcap");
    let mut reps = Vec::new();
    for r in 0..12 {
        let p = data.path().join(format!("rep{r}"));
        run_ok(
            Command::new("editcap")
                .args(["-t", &(r * 700).to_string()])
                .arg(&bulk)
                .arg(&p),
        );
        reps.push(p);
    }
    let big = data.path().join("dir");
    std::fs::create_dir(&big).unwrap();
    run_ok(
        Command::new("mergecap")
            .args(["-a", "-w"])
            .arg(big.join("big.pcap"))
            .args(&reps),
    );
    for r in reps {
        std::fs::remove_file(r).unwrap();
    }
    let state = TempDir::new().unwrap();
    let keep = state.path().to_owned();
    let path = "q/after/2023-06-01T12:00:00Z/before/2023-06-01T15:00:00Z/pcap";
    let server = Server::start_in(state, &[("big", big.clone())], "");
    // Read the first bytes of the stream, then kill the server hard.
    let mut curl = Command::new("curl")
        .args(["-sS", "-N"])
        .arg(server.url(path))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 4096];
    std::io::Read::read_exact(curl.stdout.as_mut().unwrap(), &mut first).unwrap();
    let dir = server.kill();
    let _ = curl.kill();
    let _ = curl.wait();
    // Restart on the same spool: nothing complete-looking, the request runs again in full.
    let spool = keep.join("spool");
    for p in spool_files(&spool) {
        assert!(
            p.extension().is_some_and(|x| x == "part"),
            "only a part file may remain: {p:?}"
        );
    }
    let server = Server::start_in(dir, &[("big", big.clone())], "");
    assert!(spool_files(&spool).is_empty(), "leftovers removed at start");
    let (code, body) = server.get(path, &[]);
    assert_eq!(code, 200);
    let ours = keep.join("after-restart.pcap");
    std::fs::write(&ours, &body).unwrap();
    let info = String::from_utf8(run_ok(Command::new("capinfos").arg("-c").arg(&ours))).unwrap();
    let want = String::from_utf8(run_ok(
        Command::new("capinfos").arg("-c").arg(big.join("big.pcap")),
    ))
    .unwrap();
    assert_eq!(
        info.lines().last(),
        want.lines().last(),
        "the full result after restart"
    );
}

#[test]
fn cleanup_deletes_by_age_and_by_space() {
    // By age: expire after 1 s, cleanup every second.
    let server = Server::start(
        &sensors(),
        "expire_time = 1\ncleanup_period = 1\nexpire_space = 0",
    );
    let q = "q/after/2021-01-05T06:55:00Z/before/2021-01-05T07:00:00Z";
    let id = server.json(q)["id"].as_str().unwrap().to_owned();
    assert_eq!(server.wait_final(&id)["state"], "Completed");
    let deadline = Instant::now() + Duration::from_secs(30);
    while server
        .json("ids")
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v == id.as_str())
    {
        assert!(Instant::now() < deadline, "not expired by age");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_ne!(server.get(&format!("{id}/merged.pcap"), &[]).0, 200);
}

/// By space: a 40 MiB tmpfs spool with a 35 MiB free-space target. One 12.6 MB result leaves
/// less than that free, so cleanup deletes it.
#[test]
fn cleanup_deletes_least_recently_used_until_the_space_target_is_free() {
    let dir = TempDir::new().unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    let Some(_guard) = Tmpfs::mount(&spool, "40m") else {
        return;
    };
    let server = Server::start_in(
        dir,
        &[("bulk", corpus().join("bulk"))],
        "expire_time = 0\ncleanup_period = 1\nexpire_space = 36700160",
    );
    let q = "q/after/2023-06-01T12:00:00Z/before/2023-06-01T12:20:00Z";
    let id = server.json(q)["id"].as_str().unwrap().to_owned();
    // The whole capture arrives: the job completed (cleanup may then remove it at any time).
    let (code, body) = server.get(&format!("{q}/pcap"), &[]);
    assert_eq!(code, 200);
    assert!(body.len() > 12_000_000);
    let deadline = Instant::now() + Duration::from_secs(30);
    while spool.join(format!("{id}.pcap")).exists() {
        assert!(Instant::now() < deadline, "not deleted for space");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Regression (found while benchmarking): deleting a job whose writer was still syncing, then
/// asking again, made the new job truncate the same part file, and a request failed. Every
/// answer of a delete/ask cycle must be the whole capture.
#[test]
fn deleting_and_asking_again_always_gives_the_whole_capture() {
    let server = Server::start(&[("bulk", corpus().join("bulk"))], "");
    let q = "q/after/2023-06-01T12:00:00Z/before/2023-06-01T12:20:00Z";
    let (code, first) = server.get(&format!("{q}/pcap"), &[]);
    assert_eq!(code, 200);
    for round in 0..5 {
        let id = server.json(q)["id"].as_str().unwrap().to_owned();
        let o = Command::new("curl")
            .args(["-sS", "-X", "DELETE", "-o", "/dev/null"])
            .arg(server.url(&id))
            .status()
            .unwrap();
        assert!(o.success());
        let (code, body) = server.get(&format!("{q}/pcap"), &[]);
        assert_eq!(
            code,
            200,
            "round {round}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        );
        assert!(body == first, "round {round}: a different capture");
    }
}

/// Limits end the capture cleanly at a record boundary and never exceed the bytes asked for,
/// whatever the format (a pcapng record is larger than a pcap one). With `max_queued = 0`, a
/// job that finds a free slot is still admitted.
#[test]
fn byte_limits_hold_in_pcapng_and_a_zero_queue_still_admits() {
    let server = Server::start(&[("bulk", corpus().join("bulk"))], "max_queued = 0");
    let q =
        "q/after/2023-06-01T12:00:00Z/before/2023-06-01T12:20:00Z/format/pcapng/limit-bytes/100000";
    let (code, body) = server.get(&format!("{q}/pcap"), &[]);
    assert_eq!(
        code,
        200,
        "{}",
        String::from_utf8_lossy(&body[..body.len().min(300)])
    );
    assert!(
        body.len() <= 100_000 && body.len() > 90_000,
        "{} bytes",
        body.len()
    );
    let dir = TempDir::new().unwrap();
    let f = dir.path().join("limited.pcapng");
    std::fs::write(&f, &body).unwrap();
    // Whole records only: capinfos reads it without error.
    run_ok(Command::new("capinfos").arg(&f));
    let id = server.json(q)["id"].as_str().unwrap().to_owned();
    let st = server.wait_final(&id);
    assert_eq!(st["state"], "Completed");
    assert_eq!(st["truncated_by_limit"], true);
}

#[test]
fn a_joiner_mid_job_gets_the_whole_capture_from_byte_0() {
    let work = TempDir::new().unwrap();
    let server = Server::start(&[("bulk", corpus().join("bulk"))], "");
    let (after, before) = ("2023-06-01T00:00:00Z", "2023-06-02T00:00:00Z");
    let expected = bulk_oracle(after, before, work.path());
    let path = format!("q/after/{after}/before/{before}");
    // A slow first client; the job itself is not paced by it (the spool takes the capture).
    let first_out = work.path().join("first.pcap");
    let mut first = Command::new("curl")
        .args(["-sS", "--fail", "--limit-rate", "2M", "-o"])
        .arg(&first_out)
        .arg(server.url(&format!("{path}/pcap")))
        .spawn()
        .unwrap();
    let id = server.job_id(&path);
    // Join once the job has produced 1 MiB (or has already finished: then it is a hit, and
    // the checks below still hold).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let s = server.json(&format!("status/{id}"));
        if s[&id]["bytes"].as_u64().unwrap_or(0) >= 1 << 20 || s[&id]["state"] == "Completed" {
            break;
        }
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    let (code, body) = server.get(&format!("{path}/pcap"), &[]);
    assert_eq!(code, 200);
    let joined = work.path().join("joined.pcap");
    std::fs::write(&joined, &body).unwrap();
    assert_same_packets(&joined, &expected, "joiner");
    assert!(first.wait().unwrap().success());
    assert_same_packets(&first_out, &expected, "first client");
    assert_eq!(server.json("jobs").as_array().unwrap().len(), 1, "one job");
}

/// The whole bulk directory in `[after, before)` (RFC 3339), by the oracle.
fn bulk_oracle(after: &str, before: &str, work: &Path) -> PathBuf {
    oracle(
        &[corpus().join("bulk")],
        "",
        epoch(after),
        epoch(before),
        work,
    )
    .expect("the bulk trace has packets in the window")
}
