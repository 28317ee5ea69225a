//! A job's life across the server's: history that survives a restart (clean or kill -9),
//! graceful shutdown on SIGTERM (streams finish within the grace, or end visibly truncated at
//! a record boundary), a second signal, `/jobs` paging, and every error answered from the one
//! mapping. The real `docket serve` binary, curl over loopback, tshark/capinfos as readers;
//! results compared with the tcpdump → editcap → mergecap oracle.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::corpus;
use common::server::{
    assert_prefix, assert_same_packets, epoch, oracle, spool_files, wait_for_bytes, Server, LOG,
};
use common::server::{big_dir, BIG_PATH};
use tempfile::TempDir;

const AFTER: &str = "2023-06-01T12:00:00Z";
const BEFORE: &str = "2023-06-01T12:20:00Z";

fn bulk() -> Vec<(&'static str, PathBuf)> {
    vec![("bulk", corpus().join("bulk"))]
}

fn bulk_oracle(work: &Path) -> PathBuf {
    oracle(
        &[corpus().join("bulk")],
        "",
        epoch(AFTER),
        epoch(BEFORE),
        work,
    )
    .expect("the bulk trace has packets in the window")
}

/// A directory whose server logs at info level into [`LOG`].
fn logged_dir() -> TempDir {
    let d = TempDir::new().unwrap();
    std::fs::write(d.path().join(LOG), "").unwrap();
    d
}

fn window(minute: u32) -> String {
    format!(
        "q/after/2023-06-01T12:{minute:02}:00Z/before/2023-06-01T12:{:02}:00Z",
        minute + 1
    )
}

#[test]
fn a_completed_job_survives_a_restart() {
    let work = TempDir::new().unwrap();
    let server = Server::start(&bulk(), "");
    let path = window(3);
    let id = server.job_id(&path);
    let before = server.wait_final(&id);
    assert_eq!(before["state"], "Completed", "{before:#}");
    let first = server.fetch(&format!("{id}/merged.pcap"), work.path());

    let dir = server.stop();
    let server = Server::start_in(dir, &bulk(), "");
    let after = server.json(&format!("status/{id}"))[&id].clone();
    for key in [
        "state",
        "query",
        "events",
        "upstreams",
        "packets",
        "bytes",
        "end",
    ] {
        assert_eq!(after[key], before[key], "{key} after a restart: {after:#}");
    }
    assert!(server
        .json("ids")
        .as_array()
        .unwrap()
        .contains(&id.as_str().into()));
    let jobs = server.json("jobs");
    let listed = jobs
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} listed in /jobs: {jobs:#}"));
    assert_eq!(listed["state"], "Completed");
    assert!(server.json("urls")[&id]
        .as_str()
        .unwrap()
        .ends_with("/merged.pcap"));
    // The same capture, byte for byte, and still a hit: asking again does not run it again.
    let again = server.fetch(&format!("{id}/merged.pcap"), work.path());
    assert_eq!(
        std::fs::read(&first).unwrap(),
        std::fs::read(&again).unwrap()
    );
    assert_eq!(server.job_id(&path), id);
    let status = server.json(&format!("status/{id}"))[&id].clone();
    assert_eq!(status["events"], before["events"], "a hit adds no run");
    // The UI shows it too.
    let (code, page) = server.get(&format!("ui/job/{id}"), &[]);
    assert_eq!(code, 200);
    assert!(String::from_utf8_lossy(&page).contains("Completed"));
    // Removing the job removes its history: after another restart it is unknown.
    let (code, _) = server.get(&id, &["-X", "DELETE"]);
    assert_eq!(code, 200);
    let dir = server.stop();
    let server = Server::start_in(dir, &bulk(), "");
    assert!(server.json("ids").as_array().unwrap().is_empty());
    let (code, _) = server.get(&format!("status/{id}"), &[]);
    assert_eq!(code, 200);
    assert!(server.json(&format!("status/{id}")).get(&id).is_none());
}

/// Starts a stream of the 20-minute bulk window read at `rate` (curl's `--limit-rate`).
fn slow_stream(server: &Server, out: &Path, rate: &str) -> std::process::Child {
    server.stream_at(&format!("q/after/{AFTER}/before/{BEFORE}/pcap"), out, rate)
}

/// Waits (bounded) for the process to exit; its status.
fn wait_exit(server: &mut Server, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            return s;
        }
        assert!(Instant::now() < deadline, "the server did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_lets_a_live_stream_finish_within_the_grace() {
    let work = TempDir::new().unwrap();
    let expected = bulk_oracle(work.path());
    let mut server = Server::start_in(logged_dir(), &bulk(), "shutdown_grace = \"120s\"");
    let out = work.path().join("whole.pcap");
    // About 12 MB at 4 MB/s: several seconds of streaming.
    let mut curl = slow_stream(&server, &out, "4M");
    wait_for_bytes(&out, 4096);
    server.signal(libc::SIGTERM);
    assert!(curl.wait().unwrap().success(), "the client got a clean end");
    assert_same_packets(&out, &expected, "streamed across a SIGTERM");
    let status = wait_exit(&mut server, Duration::from_secs(60));
    assert!(status.success(), "exit 0: {status:?}");
    let log = server.log();
    for line in [
        "shutdown: signal received",
        "no longer accepting",
        "every connection finished within the grace",
        "shutdown: done",
    ] {
        assert!(log.contains(line), "log has {line:?}:\n{log}");
    }
}

#[test]
fn sigterm_cuts_a_stream_past_the_grace_at_a_record_boundary_and_records_the_job() {
    let work = TempDir::new().unwrap();
    let big = big_dir(work.path());
    let locals = [("big", big.clone())];
    // A spool-less job is still running when the grace ends (the slow client paces it).
    let mut server = Server::start_in(logged_dir(), &locals, "shutdown_grace = 1\nspool = false");
    let out = work.path().join("cut.pcap");
    // The client reads steadily (2 MB/s, a 48 MB answer): the job is still running when the
    // grace ends, and what the server handed over before the cut reaches the client.
    let mut curl = server.stream_at(BIG_PATH, &out, "2M");
    wait_for_bytes(&out, 4096);
    let id = server.json("ids")[0].as_str().unwrap().to_owned();
    server.signal(libc::SIGTERM);
    let code = curl.wait().unwrap().code();
    // curl: 18 "transfer closed with outstanding read data remaining".
    assert_eq!(code, Some(18), "a visibly truncated transfer");
    let status = wait_exit(&mut server, Duration::from_secs(60));
    assert!(status.success(), "exit 0: {status:?}");
    let log = server.log();
    for line in [
        "grace over; cutting live streams",
        "recorded as interrupted",
        "shutdown: done",
    ] {
        assert!(log.contains(line), "log has {line:?}:\n{log}");
    }
    // What arrived ends at a record boundary: a readable capture, a prefix of the answer
    // (every packet of the file mergecap made: the window covers it all).
    assert_prefix(&out, &big.join("big.pcap"), "the cut stream");
    // After a restart the job says it was interrupted (the process has exited already).
    let dir = server.kill();
    let server = Server::start_in(dir, &locals, "spool = false");
    let st = server.json(&format!("status/{id}"))[&id].clone();
    assert_eq!(st["state"], "Failed", "{st:#}");
    assert!(
        st["events"].to_string().contains("interrupted by shutdown"),
        "{st:#}"
    );
}

#[test]
fn a_second_signal_exits_at_once() {
    let work = TempDir::new().unwrap();
    let mut server = Server::start_in(
        logged_dir(),
        &bulk(),
        "shutdown_grace = \"1h\"\nspool = false",
    );
    let out = work.path().join("slow.pcap");
    let mut curl = slow_stream(&server, &out, "50k");
    wait_for_bytes(&out, 4096);
    server.signal(libc::SIGTERM);
    // The first signal waits for the stream (an hour of grace); the second does not.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !server.log().contains("shutdown: signal received") {
        assert!(Instant::now() < deadline, "first signal logged");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "still in its grace"
    );
    server.signal(libc::SIGTERM);
    let status = wait_exit(&mut server, Duration::from_secs(30));
    assert!(status.success(), "{status:?}");
    assert!(server.log().contains("second signal; exiting now"));
    let _ = curl.kill();
    let _ = curl.wait();
}

#[test]
fn jobs_page_newest_first_and_filter_by_state() {
    let server = Server::start(&bulk(), "");
    let mut ids = Vec::new();
    for m in 0..5 {
        let id = server.job_id(&window(m));
        server.wait_final(&id);
        ids.push(id);
    }
    let page = |q: &str| -> Vec<String> {
        server
            .json(&format!("jobs{q}"))
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(page(""), newest_first);
    let first = page("?limit=2");
    assert_eq!(first, newest_first[..2]);
    let second = page(&format!("?limit=2&before={}", first[1]));
    assert_eq!(second, newest_first[2..4]);
    let last = page(&format!("?limit=2&before={}", second[1]));
    assert_eq!(last, newest_first[4..]);
    assert_eq!(page("?state=Completed").len(), 5);
    assert!(page("?state=Failed").is_empty());
    assert!(page("?user=nobody").is_empty());
    // The UI pages the same list.
    let (code, html) = server.get(&format!("ui/jobs?before={}", first[1]), &[]);
    assert_eq!(code, 200);
    let html = String::from_utf8_lossy(&html);
    assert!(!html.contains(&first[0][..8]) && html.contains(&newest_first[2][..8]));
}

#[test]
fn every_error_path_answers_from_the_one_mapping() {
    let server = Server::start(&bulk(), "");
    let id = "0123456789abcdef0123456789abcdef";
    // (method, path, extra curl args, status, clause named)
    type Case<'a> = (&'a str, String, &'a [&'a str], u16, Option<&'a str>);
    let cases: &[Case] = &[
        (
            "GET",
            "q/host/not-an-address".into(),
            &[],
            400,
            Some("host"),
        ),
        (
            "GET",
            "q/host/10.0.0.1/sensor/nope".into(),
            &[],
            400,
            Some("sensor"),
        ),
        ("GET", "q/after/5m/pcap/extra".into(), &[], 400, None),
        (
            "POST",
            "q".into(),
            &["-H", "Content-Type: text/plain", "--data", "x"],
            415,
            Some("content-type"),
        ),
        (
            "POST",
            "q".into(),
            &[
                "-H",
                "Content-Type: application/json",
                "--data",
                "{\"host\": 5}",
            ],
            400,
            Some("host"),
        ),
        ("GET", format!("{id}/merged.pcap"), &[], 404, Some("id")),
        ("GET", "not-an-id/merged.pcap".into(), &[], 404, Some("id")),
        ("DELETE", id.into(), &[], 404, Some("id")),
        ("GET", "jobs?limit=many".into(), &[], 400, Some("limit")),
        ("GET", "jobs?state=Sleeping".into(), &[], 400, Some("state")),
        (
            "GET",
            "jobs?before=yesterday".into(),
            &[],
            400,
            Some("before"),
        ),
        ("GET", "no/such/route".into(), &[], 404, None),
        ("PUT", "status".into(), &[], 405, None),
    ];
    for (method, path, extra, status, clause) in cases {
        let mut args = vec!["-X", method];
        args.extend_from_slice(extra);
        let (code, body) = server.get(path, &args);
        assert_eq!(
            code,
            *status,
            "{method} {path}: {}",
            String::from_utf8_lossy(&body)
        );
        let v: serde_json::Value = serde_json::from_slice(&body)
            .unwrap_or_else(|_| panic!("{method} {path}: a JSON body"));
        assert!(v["error"].is_string(), "{method} {path}: {v}");
        if let Some(c) = clause {
            assert_eq!(v["clause"], *c, "{method} {path}: {v}");
        }
    }
}

#[test]
fn kill_9_leaves_a_failed_job_without_files_and_asking_again_runs_it() {
    let work = TempDir::new().unwrap();
    let big = big_dir(work.path());
    let locals = [("big", big.clone())];
    // Spool-less, read slowly: the job is surely running when the process dies.
    let server = Server::start_in(TempDir::new().unwrap(), &locals, "spool = false");
    let spool = server.dir.path().join("spool");
    let out = work.path().join("first.pcap");
    // The client reads steadily (2 MB/s, a 48 MB answer): the job is still running when the
    // grace ends, and what the server handed over before the cut reaches the client.
    let mut curl = server.stream_at(BIG_PATH, &out, "2M");
    wait_for_bytes(&out, 4096);
    let id = server.json("ids")[0].as_str().unwrap().to_owned();
    assert_eq!(
        server.json(&format!("status/{id}"))[&id]["state"],
        "Running"
    );
    let dir = server.kill();
    let _ = curl.kill();
    let _ = curl.wait();
    let server = Server::start_in(dir, &locals, "");
    let st = server.json(&format!("status/{id}"))[&id].clone();
    assert_eq!(st["state"], "Failed", "{st:#}");
    assert!(
        st["events"].to_string().contains("interrupted by restart"),
        "{st:#}"
    );
    assert!(
        spool_files(&spool).is_empty(),
        "no files: {:?}",
        spool_files(&spool)
    );
    // Asking again runs it (now spooled) in full.
    let again = server.fetch(BIG_PATH, work.path());
    assert_eq!(
        common::tshark_packets(&again),
        common::tshark_packets(&big.join("big.pcap")),
        "asked again after kill -9"
    );
    assert_eq!(server.wait_final(&id)["state"], "Completed");
}

#[test]
fn sighup_without_tls_is_ignored() {
    let mut server = Server::start_in(logged_dir(), &bulk(), "");
    server.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.log().contains("no [tls] to reload") {
        assert!(Instant::now() < deadline, "SIGHUP logged: {}", server.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(server.child.try_wait().unwrap().is_none(), "still running");
    assert_eq!(server.get("healthz", &[]).0, 200);
}

#[test]
fn sigterm_cuts_a_spool_hit_past_the_grace_at_a_record_boundary() {
    let work = TempDir::new().unwrap();
    let big = big_dir(work.path());
    let locals = [("big", big.clone())];
    let mut server = Server::start_in(logged_dir(), &locals, "shutdown_grace = 1");
    // The job completes first: the slow client then reads the complete file (a hit).
    let id = server.job_id(BIG_PATH.trim_end_matches("/pcap"));
    assert_eq!(server.wait_final(&id)["state"], "Completed");
    let out = work.path().join("cut.pcap");
    let mut curl = server.stream_at(BIG_PATH, &out, "2M");
    wait_for_bytes(&out, 4096);
    server.signal(libc::SIGTERM);
    assert_eq!(
        curl.wait().unwrap().code(),
        Some(18),
        "a visibly truncated transfer"
    );
    assert!(wait_exit(&mut server, Duration::from_secs(60)).success());
    assert_prefix(&out, &big.join("big.pcap"), "the cut stream");
}
