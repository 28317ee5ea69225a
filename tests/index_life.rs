//! An index's life beside a running gateway, with real rotation files (the bulk trace cut by
//! `editcap -i`, named as Suricata names them, plus an unnamed capture): built in the
//! background (`/stats` shows the backlog drain), kept across a restart (no capture is read
//! again), survives a `kill -9` in the middle of indexing and a deleted `index_dir` (rebuilt;
//! never used when damaged). Oracle: the same directory answered with `index = false` — the
//! scan — byte for byte.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::server::{rotated_dir, Server};
use tempfile::TempDir;

/// Sensor `i` (indexed) and `s` (scanning) over the same directory.
fn conf(dir: &Path) -> String {
    format!(
        "time_window = 1\n[[local]]\nname = \"i\"\npath = \"{0}\"\n\
         [[local]]\nname = \"s\"\npath = \"{0}\"\nindex = false\n",
        dir.display()
    )
}

/// Queries over the bulk trace and the ground truth: selective hosts, ports, a protocol, and a
/// window alone. `{s}` is the window end's second: each round asks new jobs (an answer already
/// in the spool would not touch the index).
const QUERIES: [&str; 6] = [
    "host/10.0.2.15/after/2023-06-01T12:00:00Z/before/2023-06-01T13:00:{s}Z",
    "tcp/port/443/after/2023-06-01T12:05:00Z/before/2023-06-01T12:20:{s}Z",
    "udp/after/2023-06-01T12:00:00Z/before/2023-06-01T12:10:{s}Z",
    "after/2023-06-01T12:03:10Z/before/2023-06-01T12:03:{s}Z",
    "host/2620:1ec:c11::200/after/2021-01-05T06:55:00Z/before/2021-01-05T07:00:{s}Z",
    "net/10.0.0.0/8/port/53/after/2023-06-01T12:00:00Z/before/2023-06-01T13:00:{s}Z",
];

/// Every query answered by the indexed sensor equals the scanning sensor's answer (`round`
/// 10 to 59: the queries' window ends).
fn answers_agree(server: &Server, round: u32, what: &str) -> usize {
    let mut bytes = 0;
    for q in QUERIES {
        let q = q.replace("{s}", &round.to_string());
        let (c1, indexed) = server.get(&format!("q/sensor/i/{q}/pcap"), &[]);
        let (c2, scanned) = server.get(&format!("q/sensor/s/{q}/pcap"), &[]);
        assert_eq!((c1, c2), (200, 200), "{what}: {q}");
        assert!(
            indexed == scanned,
            "{what}: {q}: indexed {} bytes, scanned {}",
            indexed.len(),
            scanned.len()
        );
        bytes += scanned.len();
    }
    bytes
}

/// The indexed sensor's index counters from `/stats`.
fn index_stats(server: &Server) -> serde_json::Value {
    server.json("stats/i")["i"]["files"]["index"].clone()
}

/// Waits (bounded) until the indexed sensor has no indexing backlog and `files` files indexed.
fn wait_indexed(server: &Server, files: u64) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let s = index_stats(server);
        if s["backlog_bytes"] == 0 && s["indexed"] == files {
            return s;
        }
        assert!(Instant::now() < deadline, "indexing did not finish: {s}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

fn index_files(index: &Path, ext: &str) -> Vec<PathBuf> {
    std::fs::read_dir(index).map_or_else(
        |_| Vec::new(),
        |d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().ends_with(ext))
                .collect()
        },
    )
}

#[test]
fn an_index_is_built_in_the_background_and_a_restart_reads_no_capture_again() {
    let work = TempDir::new().unwrap();
    let dir = rotated_dir(work.path(), 1);
    let n = files_in(&dir) as u64;
    let server = Server::launch(TempDir::new().unwrap(), &conf(&dir), None);
    let built = wait_indexed(&server, n);
    assert_eq!(built["unindexable"], 0, "{built}");
    let answered = answers_agree(&server, 11, "indexed in the background");
    assert!(answered > 24 * QUERIES.len(), "the queries select packets");
    let index = server.dir.path().join("spool-index/i");
    assert_eq!(index_files(&index, ".idx").len() as u64, n);

    // A restart: the catalog holds every file; nothing is read again, and the answers are the
    // same.
    let server = Server::launch(server.stop(), &conf(&dir), None);
    answers_agree(&server, 12, "after a restart");
    let after = index_stats(&server);
    assert_eq!(after["files_read"], 0, "{after}");
    assert_eq!(after["indexed"], n, "{after}");

    // A capture deleted (retention): its index goes too. A capture rewritten in place with
    // other content: read again, indexed again, answered as scanned.
    let first = dir.join(format!(
        "log.pcap.{}",
        std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter_map(|e| e
                .file_name()
                .to_str()?
                .strip_prefix("log.pcap.")?
                .parse::<i64>()
                .ok())
            .min()
            .unwrap()
    ));
    std::fs::remove_file(&first).unwrap();
    std::fs::copy(
        common::corpus().join("merge/sensor-a__tls2-streams-mod3-0.pcap"),
        dir.join("other.pcap"),
    )
    .unwrap();
    answers_agree(&server, 13, "after a deletion and a rewrite");
    let s = wait_indexed(&server, n - 1);
    assert!(s["files_read"].as_u64().unwrap() >= 1, "{s}");
    assert_eq!(index_files(&index, ".idx").len() as u64, n - 1);
}

#[test]
fn a_deleted_or_damaged_index_is_never_used_and_is_built_again() {
    let work = TempDir::new().unwrap();
    let dir = rotated_dir(work.path(), 1);
    let n = files_in(&dir) as u64;
    let server = Server::launch(TempDir::new().unwrap(), &conf(&dir), None);
    wait_indexed(&server, n);
    let index = server.dir.path().join("spool-index/i");

    // The whole index directory deleted under the running gateway.
    std::fs::remove_dir_all(&index).unwrap();
    answers_agree(&server, 14, "index directory deleted");
    wait_indexed(&server, n);
    assert_eq!(index_files(&index, ".idx").len() as u64, n);

    // One index copied over another's name, and every other cut in half: all refused (the
    // queries scan), noticed, and built again as they were.
    let idx = index_files(&index, ".idx");
    let size = |f: &PathBuf| std::fs::metadata(f).unwrap().len();
    let sizes: Vec<u64> = idx.iter().map(size).collect();
    std::fs::copy(&idx[1], &idx[0]).unwrap();
    for f in &idx[2..] {
        let bytes = std::fs::read(f).unwrap();
        std::fs::write(f, &bytes[..bytes.len() / 2]).unwrap();
    }
    answers_agree(&server, 15, "damaged and foreign indexes");
    wait_indexed(&server, n);
    answers_agree(&server, 16, "indexes built again");
    let deadline = Instant::now() + Duration::from_secs(60);
    while idx.iter().map(size).collect::<Vec<_>>() != sizes {
        assert!(
            Instant::now() < deadline,
            "the damaged indexes were not rebuilt"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn kill_9_in_the_middle_of_indexing_then_a_restart_finishes_the_index() {
    let work = TempDir::new().unwrap();
    let dir = rotated_dir(work.path(), 4);
    let n = files_in(&dir) as u64;
    let server = Server::launch(TempDir::new().unwrap(), &conf(&dir), None);
    // Killed once the indexer has written some indexes and not all (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = index_stats(&server);
        let done = s["indexed"].as_u64().unwrap_or(0);
        if done >= 2 && done < n {
            break;
        }
        assert!(
            done < n && Instant::now() < deadline,
            "indexing was not caught part-way: {s}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let index = server.dir.path().join("spool-index/i");
    let home = server.kill();
    // What a crash in the middle of a write leaves: a temporary file, and a truncated one.
    std::fs::write(index.join("0123.idx.999999.0.tmp"), b"DOCKETIX half").unwrap();
    let server = Server::launch(home, &conf(&dir), None);
    answers_agree(&server, 17, "after kill -9");
    let s = wait_indexed(&server, n);
    assert!(s["files_read"].as_u64().unwrap() < 2 * n, "{s}");
    answers_agree(&server, 18, "indexing finished after the restart");
    assert!(
        index_files(&index, ".tmp").is_empty(),
        "temporary files pruned"
    );
    assert_eq!(index_files(&index, ".idx").len() as u64, n);
}

/// The tshark display filter for each of [`QUERIES`] (`{s}` as given).
fn display_filter(q: &str) -> String {
    let secs = |t: &str| common::server::epoch(t);
    let mut parts: Vec<String> = Vec::new();
    let words: Vec<&str> = q.split('/').collect();
    let mut i = 0;
    while i < words.len() {
        match words[i] {
            "host" => {
                let family = if words[i + 1].contains(':') {
                    "ipv6"
                } else {
                    "ip"
                };
                parts.push(format!("{family}.addr=={}", words[i + 1]));
                i += 1;
            }
            "net" => {
                parts.push(format!("ip.addr=={}/{}", words[i + 1], words[i + 2]));
                i += 2;
            }
            "port" => {
                parts.push(format!("(tcp.port=={0} || udp.port=={0})", words[i + 1]));
                i += 1;
            }
            "tcp" | "udp" => parts.push(words[i].to_owned()),
            "after" => {
                parts.push(format!("frame.time_epoch >= {}", secs(words[i + 1])));
                i += 1;
            }
            "before" => {
                parts.push(format!("frame.time_epoch < {}", secs(words[i + 1])));
                i += 1;
            }
            w => panic!("no display filter for {w}"),
        }
        i += 1;
    }
    parts.join(" && ")
}

#[test]
fn the_estimate_is_near_the_answer_and_an_over_weight_request_is_refused() {
    let work = TempDir::new().unwrap();
    let dir = rotated_dir(work.path(), 1);
    let n = files_in(&dir) as u64;
    let limit = 1_000_000;
    let server = Server::launch(
        TempDir::new().unwrap(),
        &format!("max_estimated_bytes = {limit}\n{}", conf(&dir)),
        None,
    );
    wait_indexed(&server, n);
    // The oracle: tshark's count over all the files at once.
    let all = work.path().join("all.pcap");
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    common::run_ok(Command::new("mergecap").arg("-w").arg(&all).args(&files));
    for q in QUERIES {
        let q = q.replace("{s}", "50");
        let filter = display_filter(&q);
        let out = common::run_ok(
            Command::new("tshark")
                .arg("-r")
                .arg(&all)
                .args(["-Y", &filter]),
        );
        let want = String::from_utf8(out).unwrap().lines().count() as f64;
        let e = server.json(&format!("q/sensor/i/{q}/estimate"));
        let got = e["estimate"]["packets"].as_f64().unwrap();
        assert!(
            (got - want).abs() <= want * 0.1,
            "{q}: estimated {got} packets, tshark finds {want}: {e}"
        );
        assert_eq!(e["estimate"]["scanned_files"], 0, "{e}");
    }

    // Over the limit: 413 naming the estimate; `ignore-weight` starts it, and the job shows
    // the estimate; a request that joins the running or finished job is never refused.
    let heavy = "q/sensor/i/after/2023-06-01T12:00:00Z/before/2023-06-01T13:00:00Z";
    let (code, body) = server.get(heavy, &[]);
    assert_eq!(code, 413, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(v["estimate"]["bytes"].as_u64().unwrap() > limit, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("ignore-weight"),
        "{v}"
    );
    let (code, _) = server.get(&format!("{heavy}/pcap"), &[]);
    assert_eq!(code, 413);
    let job = server.json(&format!("{heavy}/ignore-weight"));
    assert!(job["estimate"]["bytes"].as_u64().unwrap() > limit, "{job}");
    let (code, _) = server.get(&format!("{heavy}/pcap"), &[]);
    assert_eq!(code, 200, "the job exists: joining it is free");
    // The same by JSON.
    let post = |body: &str| {
        let o = server
            .curl()
            .args([
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-H",
                "Content-Type: application/json",
                "--data",
                body,
            ])
            .arg(server.url("q"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let heavy_json = |extra: &str| {
        format!(
            r#"{{"sensor": "i", "after": "2023-06-01T12:01:00Z", "before": "2023-06-01T13:00:00Z"{extra}}}"#
        )
    };
    assert_eq!(post(&heavy_json("")), "413");
    // The request's own limits cap what it can cost: not heavy.
    let (code, _) = server.get(
        "q/sensor/i/after/2023-06-01T12:02:00Z/before/2023-06-01T13:00:00Z/limit-bytes/1000/pcap",
        &[],
    );
    assert_eq!(code, 200, "limit-bytes caps the answer");
    let (code, _) = server.get(
        "q/sensor/i/after/2023-06-01T12:03:00Z/before/2023-06-01T13:00:00Z/limit-packets/3/pcap",
        &[],
    );
    assert_eq!(code, 200, "limit-packets caps the answer");
    assert_eq!(post(&heavy_json(r#", "ignore-weight": true"#)), "200");
    // A directory without indexes estimates its files whole.
    let e = server.json(
        "q/sensor/s/host/10.0.2.15/after/2023-06-01T12:00:00Z/before/2023-06-01T13:00:00Z/estimate",
    );
    assert_eq!(e["estimate"]["indexed_files"], 0, "{e}");
    assert!(e["estimate"]["scanned_files"].as_u64().unwrap() > 0, "{e}");
    assert_eq!(e["over_limit"], true, "{e}");
}

/// The records of a classic pcap file: the 24-byte header, then (offset, length) of each.
fn records(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let caplen = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        v.push((at, 16 + caplen));
        at += 16 + caplen;
    }
    v
}

/// A capture that grows while it is queried — records appended in bursts, each ending in the
/// middle of a record as a writer's buffer would — is read on from where it was read, and
/// indexed on from where its index ends (no file is read whole again: `files_read` stays 1);
/// every answer (indexed: planned slices of the indexed part, the rest whole) equals tcpdump's
/// over the whole records written so far. A file rewritten in place with other,
/// longer content is noticed (its first bytes changed) and read whole.
#[test]
fn a_growing_capture_is_read_on_from_where_it_was_read() {
    let work = TempDir::new().unwrap();
    let dir = work.path().join("g");
    std::fs::create_dir(&dir).unwrap();
    let src = std::fs::read(common::corpus().join("merge/ground-truth__pcpp-tls2.pcap")).unwrap();
    assert_eq!(
        &src[..4],
        &[0xd4, 0xc3, 0xb2, 0xa1],
        "a little-endian µs pcap"
    );
    let recs = records(&src);
    let live = dir.join("live.pcap");
    let conf = format!(
        "time_window = 1\n[[local]]\nname = \"i\"\npath = \"{0}\"\n\
         [[local]]\nname = \"s\"\npath = \"{0}\"\nindex = false\n",
        dir.display()
    );
    let first = recs[1000].0;
    std::fs::write(&live, &src[..first]).unwrap();
    let server = Server::launch(TempDir::new().unwrap(), &conf, None);
    let q = "host/2620:1ec:c11::200/after/2021-01-05T06:55:00Z/before/2021-01-05T07:00:00Z";
    let mut written = first;
    for (step, upto) in [2000, 3500, 5000, 7416].into_iter().enumerate() {
        let end = if upto < recs.len() {
            recs[upto].0
        } else {
            src.len()
        };
        // The burst, then half a record more (a writer's buffer cut mid-record).
        let cut = if upto < recs.len() {
            recs[upto].1 / 2
        } else {
            0
        };
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&live)
            .unwrap();
        std::io::Write::write_all(&mut f, &src[written..end + cut]).unwrap();
        drop(f);
        written = end + cut;
        // The oracle's input: the whole records written so far.
        let whole = work.path().join(format!("whole-{step}"));
        std::fs::create_dir(&whole).unwrap();
        std::fs::write(whole.join("live.pcap"), &src[..end]).unwrap();
        let want = common::server::oracle(
            &[whole],
            "host 2620:1ec:c11::200",
            common::server::epoch("2021-01-05T06:55:00Z"),
            common::server::epoch("2021-01-05T07:00:00Z"),
            work.path(),
        )
        .expect("packets of that host");
        for sensor in ["i", "s"] {
            // A job of its own at each step (a limit no answer reaches), not the last one's.
            let path = format!(
                "q/sensor/{sensor}/{q}/limit-packets/{}/pcap",
                100_000 + step
            );
            let ours = server.fetch(&path, work.path());
            common::server::assert_same_packets(
                &ours,
                &want,
                &format!("{sensor} after burst {step}"),
            );
        }
        // Appended to, never read again from the start (neither by the refresh nor by the
        // indexer, which indexes on from where the index ends).
        assert_eq!(index_stats(&server)["files_read"], 1, "burst {step}");
    }
    // The index caught up with the whole file.
    wait_indexed(&server, 1);
    assert_eq!(index_stats(&server)["files_read"], 1);
    // Rewritten in place with other, longer content: read whole (and right).
    // (The trace without its first record, then the whole trace again: longer, and its first
    // bytes differ.)
    let mut other = src[..24].to_vec();
    other.extend_from_slice(&src[recs[1].0..]);
    other.extend_from_slice(&src[24..]);
    std::fs::write(&live, &other).unwrap();
    let (_, indexed) = server.get(
        "q/sensor/i/after/2000-01-01T00:00:00Z/before/2030-01-01T00:00:00Z/pcap",
        &[],
    );
    let (_, scanned) = server.get(
        "q/sensor/s/after/2000-01-01T00:00:00Z/before/2030-01-01T00:00:00Z/pcap",
        &[],
    );
    assert!(indexed == scanned && indexed.len() > 24);
    assert_eq!(index_stats(&server)["files_read"], 2);
}

/// A capture rewritten in place with other bytes of the same length, its modification time set
/// back (as `cp -p` or `rsync --inplace -t` leave it): its change time tells it apart, so its
/// old index is not used (it would skip packets the new bytes hold) and it is read again.
#[test]
fn a_capture_rewritten_in_place_with_its_time_set_back_is_read_again() {
    let work = TempDir::new().unwrap();
    let dir = work.path().join("d");
    std::fs::create_dir(&dir).unwrap();
    let a = std::fs::read(common::corpus().join("merge/ground-truth__pcpp-tls2.pcap")).unwrap();
    // The same trace with 2620:1ec:c11::200 replaced by ::201 (same length) — away from the
    // first and last 4 KiB, which the index's identity hashes: only the times can tell.
    let from: [u8; 16] = "2620:1ec:c11::200"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets();
    let to: [u8; 16] = "2620:1ec:c11::201"
        .parse::<std::net::Ipv6Addr>()
        .unwrap()
        .octets();
    let mut b = a.clone();
    let mut n = 0;
    for i in 8192..b.len() - 8192 {
        if b[i..i + 16] == from {
            b[i..i + 16].copy_from_slice(&to);
            n += 1;
        }
    }
    assert!(n > 100, "{n} addresses replaced");
    let file = dir.join("cap.pcap");
    std::fs::write(&file, &a).unwrap();
    let server = Server::launch(TempDir::new().unwrap(), &conf(&dir), None);
    wait_indexed(&server, 1);
    let q = "host/2620:1ec:c11::201/after/2021-01-05T06:55:00Z/before/2021-01-05T07:00:00Z";
    let (_, before) = server.get(&format!("q/sensor/i/{q}/pcap"), &[]);
    assert_eq!(before.len(), 24, "no such host before the rewrite");
    let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
        f.write_all(&b).unwrap();
        f.set_modified(mtime).unwrap();
    }
    assert_eq!(std::fs::metadata(&file).unwrap().modified().unwrap(), mtime);
    let q2 = format!("{q}/limit-packets/100000");
    let (_, indexed) = server.get(&format!("q/sensor/i/{q2}/pcap"), &[]);
    let (_, scanned) = server.get(&format!("q/sensor/s/{q2}/pcap"), &[]);
    assert!(scanned.len() > 24, "the new bytes hold that host");
    assert!(
        indexed == scanned,
        "{} vs {} bytes",
        indexed.len(),
        scanned.len()
    );
}

/// An index that cannot be written for a while (the index directory replaced by a file) is
/// retried once it can be: the file is not marked unindexable for good.
#[test]
fn an_index_that_could_not_be_written_is_written_later() {
    let work = TempDir::new().unwrap();
    let dir = work.path().join("d");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(
        common::corpus().join("merge/ground-truth__pcpp-tls2.pcap"),
        dir.join("a.pcap"),
    )
    .unwrap();
    let server = Server::launch(TempDir::new().unwrap(), &conf(&dir), None);
    wait_indexed(&server, 1);
    let index = server.dir.path().join("spool-index/i");
    std::fs::remove_dir_all(&index).unwrap();
    std::fs::write(&index, b"not a directory").unwrap();
    std::fs::copy(
        common::corpus().join("merge/sensor-a__tls2-streams-mod3-0.pcap"),
        dir.join("b.pcap"),
    )
    .unwrap();
    answers_agree(&server, 20, "the index directory is a file");
    let s = index_stats(&server);
    assert_eq!(s["unindexable"], 0, "{s}");
    std::fs::remove_file(&index).unwrap();
    // Written on a later pass (after the pause that follows a failed write).
    wait_indexed(&server, 2);
    assert_eq!(index_files(&index, ".idx").len(), 2);
}

/// A query skips listing the directory while its change watch says nothing changed: a file
/// that appears in a new subdirectory, or one deleted, just before a query must still be in
/// (or out of) its answer. Oracle: tcpdump + mergecap over the directory as it is then.
#[test]
fn a_change_just_before_a_query_is_in_its_answer() {
    let work = TempDir::new().unwrap();
    let dir = work.path().join("w");
    std::fs::create_dir(&dir).unwrap();
    let corpus = common::corpus().join("merge");
    std::fs::copy(
        corpus.join("ground-truth__pcpp-tls2.pcap"),
        dir.join("other.pcap"),
    )
    .unwrap();
    let server = Server::launch(TempDir::new().unwrap(), &conf(&dir), None);
    wait_indexed(&server, 1);
    let (after, before) = ("2000-01-01T00:00:00Z", "2030-01-01T00:00:");
    let check = |second: u32, what: &str| {
        let window = format!("after/{after}/before/{before}{second:02}Z");
        let dirs: Vec<PathBuf> = [dir.clone(), dir.join("new")]
            .into_iter()
            .filter(|d| d.exists())
            .collect();
        let want = common::server::oracle(
            &dirs,
            "",
            common::server::epoch(after),
            common::server::epoch(&format!("{before}{second:02}Z")),
            work.path(),
        )
        .expect("packets");
        for sensor in ["i", "s"] {
            let ours = server.fetch(&format!("q/sensor/{sensor}/{window}/pcap"), work.path());
            common::server::assert_same_packets(&ours, &want, &format!("{sensor}: {what}"));
        }
    };
    // Twice with nothing changed: the second answer comes from the table as it was.
    check(1, "as launched");
    check(2, "nothing changed");
    std::fs::create_dir(dir.join("new")).unwrap();
    std::fs::copy(
        corpus.join("natural-pair-requests__pcpp-4KHttpRequests.pcap"),
        dir.join("new/req.pcap"),
    )
    .unwrap();
    check(3, "a file in a new subdirectory");
    std::fs::remove_file(dir.join("other.pcap")).unwrap();
    check(4, "a file deleted");
}
