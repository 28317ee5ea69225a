//! Docket in front of real Stenographer sensors (Debian's `stenographer`, started in network
//! namespaces of their own by `../shared/steno/up.sh`, fed by real `tcpreplay`, stopped by
//! `down.sh` — by PID, nothing by name — even when a test fails).
//!
//! Oracles: what each sensor returns to a direct `curl` with the same query, gated to the exact
//! window by `editcap` and merged by `mergecap`; per-sensor packet counts from `tcpdump -r` of
//! the replayed file; the sensor's own request counter for deduplication.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::front::Ca;
use common::server::{assert_same_packets, rand_suffix, Server};
use common::{corpus, run_ok, tshark_packets};
use tempfile::TempDir;

/// One sensor as `instances.json` describes it.
#[derive(Debug, Clone)]
struct Instance {
    name: String,
    url: String,
    host: String,
    port: u16,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    pid: i32,
}

/// The only addresses tests may assign (in namespaces they create): 198.51.100.0/24. One set
/// of sensors at a time holds it ([`ONE_SET`]).
const NET: &str = "198.51.100";

/// Held by a test for as long as its sensors run: two sets cannot share the range.
static ONE_SET: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A set of real sensors, brought down (and their namespaces removed) on drop.
struct Sensors {
    work: PathBuf,
    instances: Vec<Instance>,
}

fn steno_scripts() -> PathBuf {
    std::env::var_os("DOCKET_STENO").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/steno"),
        PathBuf::from,
    )
}

impl Sensors {
    /// Starts two sensors `a`, `b` with netns prefix `prefix` on [`NET`].0/24 (up.sh refuses
    /// a range this machine uses), certificates in `style`. Hold [`ONE_SET`] meanwhile.
    fn up(prefix: &str, style: &str) -> Sensors {
        let work = PathBuf::from(format!("/tmp/docket-test-{prefix}"));
        // Leftovers of a crashed earlier run first (down.sh knows them from its state file).
        let _ = Command::new(steno_scripts().join("down.sh"))
            .arg(&work)
            .output();
        let o = Command::new(steno_scripts().join("up.sh"))
            .arg(&work)
            .env("STENO_PREFIX", prefix)
            .env("STENO_NET", NET)
            .env("STENO_CERTS", style)
            .env("STENO_INSTANCES", "2")
            .output()
            .unwrap();
        let mut sensors = Sensors {
            work: work.clone(),
            instances: Vec::new(),
        };
        assert!(
            o.status.success(),
            "up.sh failed:\n{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(work.join("instances.json")).unwrap()).unwrap();
        sensors.instances = json["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| Instance {
                name: i["name"].as_str().unwrap().into(),
                url: i["url"].as_str().unwrap().into(),
                host: i["host"].as_str().unwrap().into(),
                port: i["port"].as_u64().unwrap() as u16,
                ca: i["ca_cert"].as_str().unwrap().into(),
                cert: i["client_cert"].as_str().unwrap().into(),
                key: i["client_key"].as_str().unwrap().into(),
                pid: i["pid"].as_i64().unwrap() as i32,
            })
            .collect();
        sensors
    }

    fn get(&self, name: &str) -> &Instance {
        self.instances.iter().find(|i| i.name == name).unwrap()
    }

    /// Replays files into sensors concurrently and waits until every packet is queryable.
    fn replay(&self, files: &[(&str, &Path)], tcpreplay_args: &[&str]) {
        let mut cmd = Command::new(steno_scripts().join("replay.sh"));
        cmd.arg("-w").arg(&self.work);
        for (name, f) in files {
            cmd.arg(format!("{name}={}", f.display()));
        }
        if !tcpreplay_args.is_empty() {
            cmd.arg("--").args(tcpreplay_args);
        }
        let o = cmd.output().unwrap();
        assert!(
            o.status.success(),
            "replay failed:\n{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

impl Drop for Sensors {
    fn drop(&mut self) {
        let _ = Command::new(steno_scripts().join("down.sh"))
            .arg(&self.work)
            .output();
    }
}

/// A `[[stenographer]]` table for an instance, with another CA or key when given.
fn table(i: &Instance, name: &str, ca: Option<&Path>, key: Option<&Path>) -> String {
    format!(
        "[[stenographer]]\nname = \"{name}\"\nhost = \"{}\"\nport = {}\ncert = \"{}\"\nkey = \"{}\"\n\
         ca = \"{}\"\nidle_timeout = 20\n",
        i.host,
        i.port,
        i.cert.display(),
        key.unwrap_or(&i.key).display(),
        ca.unwrap_or(&i.ca).display()
    )
}

/// What a sensor answers to curl for `query` (Stenographer's language), into a file.
fn direct(i: &Instance, query: &str, work: &Path) -> PathBuf {
    let out = work.join(format!("direct-{}-{}.pcap", i.name, rand_suffix()));
    run_ok(
        Command::new("curl")
            .args(["-sS", "--fail", "--cacert"])
            .arg(&i.ca)
            .arg("--cert")
            .arg(&i.cert)
            .arg("--key")
            .arg(&i.key)
            .args(["--data-binary", query, "-o"])
            .arg(&out)
            .arg(format!("{}/query", i.url)),
    );
    out
}

/// The sensor's own count of answered queries.
fn queries_answered(i: &Instance) -> i64 {
    let out = run_ok(
        Command::new("curl")
            .args(["-sS", "--fail", "--cacert"])
            .arg(&i.ca)
            .arg("--cert")
            .arg(&i.cert)
            .arg("--key")
            .arg(&i.key)
            .arg(format!("{}/debug/stats", i.url)),
    );
    String::from_utf8_lossy(&out)
        .lines()
        .find_map(|l| {
            let mut it = l.split_whitespace();
            (it.next() == Some("http_request_query_POST_completed"))
                .then(|| it.next().unwrap().parse().unwrap())
        })
        .unwrap_or(0)
}

fn rfc3339(epoch: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(epoch)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// `editcap` to `[after, before)`; `None` when nothing is left (mergecap refuses such files).
fn gate(file: &Path, after: i64, before: i64, work: &Path) -> Option<PathBuf> {
    let out = work.join(format!("gated-{}.pcap", rand_suffix()));
    run_ok(
        Command::new("editcap")
            .args(["-A", &after.to_string(), "-B", &before.to_string()])
            .arg(file)
            .arg(&out),
    );
    (!tshark_packets(&out).is_empty()).then_some(out)
}

/// The oracle for a query over sensors (in configuration order): direct answers, gated,
/// merged. `None` for an empty result.
fn expected(
    sensors: &[&Instance],
    clauses: &str,
    after: i64,
    before: i64,
    work: &Path,
) -> Option<PathBuf> {
    expected_filtered(sensors, clauses, "", after, before, work)
}

/// [`expected`], each sensor's gated answer then filtered by tcpdump with `bpf`.
fn expected_filtered(
    sensors: &[&Instance],
    clauses: &str,
    bpf: &str,
    after: i64,
    before: i64,
    work: &Path,
) -> Option<PathBuf> {
    let mut q = format!("after {} and before {}", rfc3339(after), rfc3339(before));
    if !clauses.is_empty() {
        q.push_str(" and ");
        q.push_str(clauses);
    }
    let parts: Vec<PathBuf> = sensors
        .iter()
        .filter_map(|i| gate(&direct(i, &q, work), after, before, work))
        .filter_map(|g| {
            if bpf.is_empty() {
                return Some(g);
            }
            let f = work.join(format!("filtered-{}.pcap", rand_suffix()));
            run_ok(
                Command::new("tcpdump")
                    .arg("-r")
                    .arg(&g)
                    .arg("-w")
                    .arg(&f)
                    .arg(bpf),
            );
            (!tshark_packets(&f).is_empty()).then_some(f)
        })
        .collect();
    if parts.is_empty() {
        return None;
    }
    let out = work.join(format!("expected-{}.pcap", rand_suffix()));
    run_ok(
        Command::new("mergecap")
            .args(["-F", "pcap", "-w"])
            .arg(&out)
            .args(&parts),
    );
    Some(out)
}

/// Packets `tcpdump -r FILE FILTER` finds.
fn tcpdump_count(file: &Path, filter: &str) -> usize {
    let mut cmd = Command::new("tcpdump");
    cmd.arg("-r").arg(file);
    if !filter.is_empty() {
        cmd.arg(filter);
    }
    let out = run_ok(&mut cmd);
    String::from_utf8_lossy(&out).lines().count()
}

/// The first and last packet times (epoch seconds, rounded out) of a capture.
fn span(file: &Path) -> (i64, i64) {
    let p = tshark_packets(file);
    let secs = |t: &str| -> i64 { t.split('.').next().unwrap().parse().unwrap() };
    (secs(&p[0].time), secs(&p[p.len() - 1].time) + 1)
}

/// Network namespaces need CAP_SYS_ADMIN; without it no real sensor can run here.
fn can_make_namespaces() -> bool {
    let ok = Command::new("unshare")
        .args(["-n", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIPPED: cannot create network namespaces here (needs root)");
    }
    ok
}

#[test]
fn two_sensors_merge_like_mergecap_of_direct_answers() {
    if !can_make_namespaces() {
        return;
    }
    let _one = ONE_SET.lock().unwrap_or_else(|e| e.into_inner());
    let sensors = Sensors::up("dkts", "san");
    let work = TempDir::new().unwrap();
    let file_a = corpus().join("merge/sensor-a__tls2-streams-mod3-0.pcap");
    let file_b = corpus().join("merge/sensor-b__tls2-streams-mod3-1.pcapng");
    // Spread over seconds (original gaps / 20), so that tight windows cut through the data.
    sensors.replay(&[("a", &file_a), ("b", &file_b)], &["-x", "20"]);
    let (a, b) = (sensors.get("a"), sensors.get("b"));

    // Sensor b's client key as PKCS#1 ("BEGIN RSA PRIVATE KEY"), a's as written (PKCS#8).
    let pkcs1 = work.path().join("client-pkcs1.key");
    run_ok(
        Command::new("openssl")
            .args(["rsa", "-traditional", "-in"])
            .arg(&b.key)
            .arg("-out")
            .arg(&pkcs1),
    );
    assert!(std::fs::read_to_string(&pkcs1)
        .unwrap()
        .contains("BEGIN RSA PRIVATE KEY"));
    let tables = table(a, "a", None, None) + &table(b, "b", None, Some(&pkcs1));
    let server = Server::start_with(TempDir::new().unwrap(), &[], "time_window = 1", &tables);

    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let full = |i: &Instance| direct(i, &format!("after {}", rfc3339(now - 600)), work.path());
    let (sa, sb) = (span(&full(a)), span(&full(b)));
    let (after, before) = (sa.0.min(sb.0), sa.1.max(sb.1));

    // (URL clauses, Stenographer clauses, tcpdump filter for the per-sensor counts)
    let queries = [
        (
            "host/96.6.132.113/port/443",
            "host 96.6.132.113 and port 443",
            "host 96.6.132.113 and port 443",
        ),
        (
            "host/2620:1ec:c11::200",
            "host 2620:1ec:c11::200",
            "host 2620:1ec:c11::200",
        ),
        (
            "net/192.168.0.0/16",
            "net 192.168.0.0/16",
            "net 192.168.0.0/16",
        ),
        (
            "net/2601:647::/32",
            "net 2601:647::/32",
            "net 2601:647::/32",
        ),
        (
            "tcp/port/443",
            "ip proto 6 and port 443",
            "tcp and port 443",
        ),
        (
            "net/192.168.0.0/16/port/443",
            "net 192.168.0.0/16 and port 443",
            "net 192.168.0.0/16 and port 443",
        ),
    ];
    for (url, steno, filter) in queries {
        let path = format!("q/after/@{after}/before/@{before}/{url}/pcap");
        let ours = server.fetch(&path, work.path());
        match expected(&[a, b], steno, after, before, work.path()) {
            Some(e) => assert_same_packets(&ours, &e, url),
            None => assert!(tshark_packets(&ours).is_empty(), "{url}: expected nothing"),
        }
        // Each sensor's share equals tcpdump over what was replayed into it.
        let id = server.job_id(&path.replace("/pcap", ""));
        let status = server.wait_final(&id);
        assert_eq!(status["state"], "Completed", "{url}: {status:#}");
        for (k, file) in [file_a.as_path(), file_b.as_path()].iter().enumerate() {
            let got = status["upstreams"][k]["packets"].as_u64().unwrap() as usize;
            assert_eq!(
                got,
                tcpdump_count(file, filter),
                "{url}: sensor {k} vs tcpdump"
            );
        }
    }

    // Tight windows, cutting through the replay at whole seconds.
    for (from, to) in [
        (after + 1, after + 3),
        (after + 2, before - 1),
        (after, after + 1),
    ] {
        let path = format!("q/after/@{from}/before/@{to}/pcap");
        let ours = server.fetch(&path, work.path());
        match expected(&[a, b], "", from, to, work.path()) {
            Some(e) => assert_same_packets(&ours, &e, &format!("window {from}..{to}")),
            None => assert!(tshark_packets(&ours).is_empty()),
        }
    }

    // A raw BPF clause: the structured part is pushed down, the expression applied by Docket;
    // and `sensor/` restricts the job to the sensors named.
    let bpf = "tcp[tcpflags] & tcp-push != 0";
    let enc = "tcp%5Btcpflags%5D%20%26%20tcp-push%20!%3D%200";
    for (url, sensors_asked) in [
        (format!("port/443/bpf/{enc}"), vec![a, b]),
        (format!("sensor/b/port/443/bpf/{enc}"), vec![b]),
        ("sensor/a".to_owned(), vec![a]),
    ] {
        let path = format!("q/after/@{after}/before/@{before}/{url}/pcap");
        let ours = server.fetch(&path, work.path());
        let (clauses, filter) = if url.contains("bpf") {
            ("port 443", bpf)
        } else {
            ("", "")
        };
        let e = expected_filtered(&sensors_asked, clauses, filter, after, before, work.path());
        assert_same_packets(&ours, &e.unwrap(), &url);
    }

    // Twenty identical requests at once: one job, each sensor asked once.
    let before_counts = (queries_answered(a), queries_answered(b));
    let path = format!("q/after/@{after}/before/@{before}/port/443/pcap");
    let url = server.url(&path);
    let children: Vec<_> = (0..20)
        .map(|n| {
            let out = work.path().join(format!("twenty-{n}.pcap"));
            let child = Command::new("curl")
                .args(["-sS", "--fail", "-o"])
                .arg(&out)
                .arg(&url)
                .spawn()
                .unwrap();
            (child, out)
        })
        .collect();
    let mut outputs = Vec::new();
    for (mut c, out) in children {
        assert!(c.wait().unwrap().success());
        outputs.push(std::fs::read(out).unwrap());
    }
    assert!(outputs.iter().all(|o| o == &outputs[0] && o.len() > 24));
    assert_eq!(
        queries_answered(a) - before_counts.0,
        1,
        "sensor a asked once"
    );
    assert_eq!(
        queries_answered(b) - before_counts.1,
        1,
        "sensor b asked once"
    );

    // One sensor known under a wrong CA, one that is not running at all: partial, each with
    // its reason, and the client gets exactly sensor a's answer.
    let other = Ca::new(work.path(), "unrelated");
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = Instance {
        host: "127.0.0.1".into(),
        port: dead_port,
        ..a.clone()
    };
    let tables = table(a, "a", None, None)
        + &table(b, "b-wrong-ca", Some(&other.cert), None)
        + &table(&dead, "not-running", None, None);
    let mixed = Server::start_with(TempDir::new().unwrap(), &[], "time_window = 1", &tables);
    let path = format!("q/after/@{after}/before/@{before}/pcap");
    let ours = mixed.fetch(&path, work.path());
    assert_same_packets(
        &ours,
        &expected(&[a], "", after, before, work.path()).unwrap(),
        "only sensor a",
    );
    let status = mixed.wait_final(&mixed.job_id(&path.replace("/pcap", "")));
    assert_eq!(status["state"], "Partial", "{status:#}");
    let err = |k: usize| {
        status["upstreams"][k]["error"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    assert!(err(1).contains("TLS handshake failed"), "{}", err(1));
    assert!(err(2).contains("cannot connect"), "{}", err(2));
    // `/stats` shows the dead sensor as down, and the live one's data availability.
    let stats = mixed.json("stats");
    assert_eq!(stats["a"]["up"], true, "{stats:#}");
    assert!(stats["a"]["oldest_timestamp"].is_string(), "{stats:#}");
    assert_eq!(stats["not-running"]["up"], false, "{stats:#}");

    // A sensor stopped mid-answer: the bulk trace into b, b frozen once Docket has packets
    // from it, then killed. The job is partial, b's reason says its answer broke off, and the
    // client's capture holds all of a's packets plus a prefix of b's answer.
    // Eight loops of the bulk trace: ~100 MB, about a second of answer.
    let bulk = corpus().join("bulk/mix-19-real-captures-10min.pcap");
    sensors.replay(&[("b", &bulk)], &["--topspeed", "--loop=8"]);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let (after2, before2) = (after, now + 2);
    let b_full = gate(
        &direct(b, &format!("after {}", rfc3339(now - 600)), work.path()),
        after2,
        before2,
        work.path(),
    )
    .unwrap();
    let path = format!("q/after/@{after2}/before/@{before2}/pcap");
    let out = work.path().join("killed.pcap");
    let mut client = Command::new("curl")
        .args(["-sS", "-o"])
        .arg(&out)
        .arg(server.url(&path))
        .spawn()
        .unwrap();
    let id = server.job_id(&path.replace("/pcap", ""));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = server.json(&format!("status/{id}"));
        if s[&id]["upstreams"][1]["packets"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no packets from b: {s:#}");
        std::thread::sleep(Duration::from_millis(5));
    }
    unsafe { libc::kill(b.pid, libc::SIGSTOP) };
    let s = server.json(&format!("status/{id}"));
    let still_answering = s[&id]["upstreams"][1]["state"] == "requesting";
    unsafe { libc::kill(b.pid, libc::SIGKILL) };
    client.wait().unwrap();
    let status = server.wait_final(&id);
    if still_answering {
        assert_eq!(status["state"], "Partial", "{status:#}");
        let e = status["upstreams"][1]["error"].as_str().unwrap_or("");
        assert!(e.contains("broke off") || e.contains("truncated"), "{e}");
    } else {
        eprintln!("NOTE: sensor b finished its answer before it could be stopped");
    }
    let ours = tshark_packets(&out);
    let a_part = tshark_packets(&expected(&[a], "", after2, before2, work.path()).unwrap());
    let b_all = tshark_packets(&b_full);
    let (from_a, from_b): (Vec<_>, Vec<_>) = ours.into_iter().partition(|p| a_part.contains(p));
    assert_eq!(from_a.len(), a_part.len(), "all of a's packets");
    assert!(from_b.len() <= b_all.len());
    assert!(
        from_b == b_all[..from_b.len()],
        "b's packets are a prefix of its answer"
    );
}

#[test]
fn stenokeys_certificates_work_and_another_sensors_ca_is_refused() {
    if !can_make_namespaces() {
        return;
    }
    // Certificates as the package's stenokeys.sh makes them: v1, no extensions, the address
    // only in the CN, one CA per sensor.
    let _one = ONE_SET.lock().unwrap_or_else(|e| e.into_inner());
    let sensors = Sensors::up("dktk", "stenokeys");
    let work = TempDir::new().unwrap();
    let file = corpus().join("merge/sensor-a__tls2-streams-mod3-0.pcap");
    sensors.replay(&[("a", &file)], &[]);
    let (a, b) = (sensors.get("a"), sensors.get("b"));
    let tables = table(a, "a", None, None) + &table(a, "a-under-b-ca", Some(&b.ca), None);
    let server = Server::start_with(TempDir::new().unwrap(), &[], "time_window = 1", &tables);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let (after, before) = (now - 300, now + 2);
    let path = format!("q/after/@{after}/before/@{before}/pcap");
    let ours = server.fetch(&path, work.path());
    assert_same_packets(
        &ours,
        &expected(&[a], "", after, before, work.path()).unwrap(),
        "stenokeys sensor",
    );
    assert_eq!(tshark_packets(&ours).len(), tcpdump_count(&file, ""));
    let status = server.wait_final(&server.job_id(&path.replace("/pcap", "")));
    assert_eq!(status["state"], "Partial", "{status:#}");
    assert_eq!(status["upstreams"][0]["state"], "done");
    // The window starts minutes before anything was captured: the job says so.
    assert!(
        status["events"]
            .to_string()
            .contains("before the sensor's oldest data"),
        "{status:#}"
    );
    let e = status["upstreams"][1]["error"].as_str().unwrap_or("");
    assert!(
        e.contains("TLS handshake failed") && e.contains("UnknownIssuer"),
        "{e}"
    );
}
