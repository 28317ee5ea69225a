//! Sensor faults that a real Stenographer cannot be made to show on demand, played by a real
//! HTTPS server process (`tests/fault-sensor.py`, client certificate required, chunked pcap
//! like Stenographer) — next to a healthy local directory in the same job. Each fault must
//! fail only its sensor, with its own reason; the client must get a valid capture holding the
//! others' packets (and whatever whole records the broken sensor delivered in the window).
//! Oracle: `editcap -r` for the records a broken sensor sent, tcpdump/editcap/mergecap for the
//! rest, compared through tshark.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::front::{Ca, KeyKind};
use common::server::{assert_same_packets, oracle, rand_suffix, Server};
use common::{corpus, first_line, run_ok};
use tempfile::TempDir;

const AFTER: &str = "2021-01-05T06:55:00Z";
const BEFORE: &str = "2021-01-05T07:00:00Z";
const AFTER_S: i64 = 1_609_829_700;
const BEFORE_S: i64 = 1_609_830_000;

/// The capture the fault servers stream (classic pcap, ns, Ethernet).
fn streamed() -> PathBuf {
    corpus().join("merge/sensor-c__tls2-streams-mod3-2-and-non-tcp.nsec.pcap")
}

/// A running fault server, killed by PID on drop.
struct Fault {
    child: Child,
    port: u16,
}

impl Fault {
    fn start(mode: &str, records: usize, server: &Pair, ca: &Path) -> Fault {
        Fault::start_on(0, mode, records, server, ca)
    }

    /// On a given port (0: any).
    fn start_on(port: u16, mode: &str, records: usize, server: &Pair, ca: &Path) -> Fault {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fault-sensor.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--mode", mode, "--records", &records.to_string(), "--pcap"])
            .arg(streamed())
            .arg("--cert")
            .arg(&server.cert)
            .arg("--key")
            .arg(&server.key)
            .arg("--ca")
            .arg(ca)
            .args(["--port", &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let line = first_line(&mut child);
        let port = line
            .strip_prefix("PORT ")
            .unwrap_or_else(|| panic!("fault server said {line:?}"))
            .parse()
            .unwrap();
        Fault { child, port }
    }
}

impl Drop for Fault {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `[[stenographer]]` table.
fn sensor(name: &str, port: u16, client: &Pair, ca: &Path, extra: &str) -> String {
    format!(
        "[[stenographer]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {port}\n\
         cert = \"{}\"\nkey = \"{}\"\nca = \"{}\"\n{extra}\n",
        client.cert.display(),
        client.key.display(),
        ca.display()
    )
}

/// The first `n` records of the streamed file, as a file.
fn first_records(work: &Path, n: usize) -> PathBuf {
    let out = work.join(format!("prefix-{n}-{}.pcap", rand_suffix()));
    run_ok(
        Command::new("editcap")
            .arg("-r")
            .arg(streamed())
            .arg(&out)
            .arg(format!("1-{n}")),
    );
    out
}

/// A local directory holding one corpus file (a symlink: nothing is copied).
fn local_dir(work: &Path) -> PathBuf {
    let d = work.join("local");
    std::fs::create_dir_all(&d).unwrap();
    let f = corpus().join("merge/sensor-a__tls2-streams-mod3-0.pcap");
    std::os::unix::fs::symlink(&f, d.join("a.pcap")).unwrap();
    d
}

/// A certificate and its key (PEM files).
struct Pair {
    cert: PathBuf,
    key: PathBuf,
}

struct Pki {
    ca: Ca,
    server: Pair,
    client: Pair,
    other_ca: Ca,
    other_client: Pair,
}

fn pki(dir: &Path) -> Pki {
    let pair = |(cert, key)| Pair { cert, key };
    let ca = Ca::new(dir, "fault");
    let server = pair(ca.issue("server", "127.0.0.1", true, KeyKind::EcSec1));
    let client = pair(ca.issue("client", "docket", false, KeyKind::EcSec1));
    let other_ca = Ca::new(dir, "other");
    let other_client = pair(other_ca.issue("other-client", "docket", false, KeyKind::EcSec1));
    Pki {
        ca,
        server,
        client,
        other_ca,
        other_client,
    }
}

#[test]
fn every_fault_fails_only_its_sensor_and_the_rest_still_merge() {
    let work = TempDir::new().unwrap();
    let p = pki(work.path());
    let modes: [(&str, &str, usize, &str); 6] = [
        ("f-status", "status", 0, ""),
        ("f-html", "html", 0, ""),
        ("f-stall", "stall", 5, "idle_timeout = 2"),
        ("f-silent", "silent", 0, "first_byte_timeout = 2"),
        ("f-die", "die", 7, ""),
        ("f-corrupt", "corrupt", 9, ""),
    ];
    let faults: Vec<Fault> = modes
        .iter()
        .map(|(_, mode, n, _)| Fault::start(mode, *n, &p.server, &p.ca.cert))
        .collect();
    let mut tables = String::new();
    for ((name, _, _, extra), f) in modes.iter().zip(&faults) {
        tables.push_str(&sensor(name, f.port, &p.client, &p.ca.cert, extra));
    }
    // Nothing listens on a port just released.
    let refused = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    tables.push_str(&sensor("f-refused", refused, &p.client, &p.ca.cert, ""));
    // Docket trusts another CA than the one that signed the server's certificate.
    let ok = Fault::start("ok", 0, &p.server, &p.ca.cert);
    tables.push_str(&sensor(
        "f-wrong-ca",
        ok.port,
        &p.client,
        &p.other_ca.cert,
        "",
    ));
    // Docket presents a client certificate the sensor's CA did not sign.
    tables.push_str(&sensor(
        "f-bad-client",
        ok.port,
        &p.other_client,
        &p.ca.cert,
        "",
    ));

    let local = local_dir(work.path());
    let server = Server::start_with(
        TempDir::new().unwrap(),
        &[("local", local.clone())],
        "",
        &tables,
    );
    let path = format!("q/after/{AFTER}/before/{BEFORE}/pcap");
    let ours = server.fetch(&path, work.path());

    // What the client got: the local directory, plus the whole records the stalled, dying
    // and corrupting sensors sent before their fault — in configuration order for ties.
    let mut parts = vec![oracle(&[local], "", AFTER_S, BEFORE_S, work.path()).unwrap()];
    parts.extend([5, 7, 9].map(|n| first_records(work.path(), n)));
    let expected = work.path().join("expected.pcapng");
    run_ok(
        Command::new("mergecap")
            .args(["-F", "pcapng", "-w"])
            .arg(&expected)
            .args(&parts),
    );
    let id = server.job_id(&path.replace("/pcap", ""));
    let status = server.wait_final(&id);
    eprintln!("{status:#}");
    assert_same_packets(&ours, &expected, "faulty sensors beside a local directory");
    assert_eq!(status["state"], "Partial", "{status:#}");
    let reasons: Vec<(String, String, String)> = status["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["name"].as_str().unwrap().to_owned(),
                u["state"].as_str().unwrap().to_owned(),
                u["error"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let reason = |name: &str| {
        let (_, state, error) = reasons.iter().find(|(n, _, _)| n == name).unwrap();
        (state.clone(), error.clone())
    };
    assert_eq!(reason("local").0, "done", "{reasons:?}");
    for (name, wanted) in [
        ("f-status", "400"),
        ("f-html", "not a pcap"),
        ("f-stall", "timed out: idle"),
        ("f-silent", "timed out: response headers"),
        ("f-die", "broke off"),
        ("f-corrupt", "exceeds the limit"),
        ("f-refused", "cannot connect"),
        ("f-wrong-ca", "TLS handshake failed"),
        ("f-bad-client", "refused Docket's client certificate"),
    ] {
        let (state, error) = reason(name);
        assert_eq!(state, "failed", "{name}: {error}");
        assert!(error.contains(wanted), "{name}: {error:?} lacks {wanted:?}");
    }
    // The sensor's own words are the reason.
    assert!(reason("f-status").1.contains("could not parse query"));
    drop(faults);
}

#[test]
fn a_healthy_sensor_mixes_with_a_local_directory_and_raw_bpf_is_applied_by_docket() {
    let work = TempDir::new().unwrap();
    let p = pki(work.path());
    let ok = Fault::start("ok", 0, &p.server, &p.ca.cert);
    // A tiny server limit: every answer ends "near" it, so the job must say possibly truncated.
    let tables = sensor("steno", ok.port, &p.client, &p.ca.cert, "server_limit = 1");
    let local = local_dir(work.path());
    let server = Server::start_with(
        TempDir::new().unwrap(),
        &[("local", local.clone())],
        "",
        &tables,
    );
    let filter = "tcp[tcpflags] & tcp-push != 0 or not tcp";
    let enc = filter
        .replace(' ', "%20")
        .replace('&', "%26")
        .replace('[', "%5B")
        .replace(']', "%5D");
    let path = format!("q/after/{AFTER}/before/{BEFORE}/bpf/{enc}/pcap");
    let ours = server.fetch(&path, work.path());
    // The sensor ignores the query and sends everything (as one that cannot evaluate the
    // expression would): tcpdump with the same filter over both files is the oracle.
    let sensor_dir = work.path().join("sensor");
    std::fs::create_dir_all(&sensor_dir).unwrap();
    std::os::unix::fs::symlink(streamed(), sensor_dir.join("c.pcap")).unwrap();
    let expected = oracle(&[local, sensor_dir], filter, AFTER_S, BEFORE_S, work.path()).unwrap();
    assert_same_packets(&ours, &expected, "local + sensor, raw BPF");

    let id = server.job_id(&path.replace("/pcap", ""));
    let status = server.wait_final(&id);
    assert_eq!(status["state"], "Completed", "{status:#}");
    let events = status["events"].to_string();
    assert!(events.contains("possibly truncated"), "{events}");
}

#[test]
fn a_partial_result_is_never_a_hit_asking_again_asks_the_failed_sensor_again() {
    let work = TempDir::new().unwrap();
    let p = pki(work.path());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tables = sensor("steno", port, &p.client, &p.ca.cert, "");
    let local = local_dir(work.path());
    let spool_home = TempDir::new().unwrap();
    let home = spool_home.path().to_owned();
    let server = Server::start_with(spool_home, &[("local", local.clone())], "", &tables);
    let path = format!("q/after/{AFTER}/before/{BEFORE}");
    let id = server.job_id(&path);
    assert_eq!(server.wait_final(&id)["state"], "Partial");

    // Docket restarts over the same spool: the partial file must not be served as a hit.
    let keep = server.kill();
    let server = Server::start_with(keep, &[("local", local.clone())], "", &tables);
    assert_eq!(server.dir.path(), home.as_path());
    assert_eq!(server.job_id(&path), id);
    assert_eq!(
        server.wait_final(&id)["state"],
        "Partial",
        "asked again, still down"
    );

    // The sensor comes back: the same request now gets everything.
    let _sensor = Fault::start_on(port, "ok", 0, &p.server, &p.ca.cert);
    let (code, body) = server.get(&format!("{path}/pcap"), &[]);
    assert_eq!(code, 200);
    assert_eq!(server.wait_final(&id)["state"], "Completed");
    let ours = work.path().join("ours.pcap");
    std::fs::write(&ours, &body).unwrap();
    let sensor_dir = work.path().join("sensor");
    std::fs::create_dir_all(&sensor_dir).unwrap();
    std::os::unix::fs::symlink(streamed(), sensor_dir.join("c.pcap")).unwrap();
    let expected = oracle(&[local, sensor_dir], "", AFTER_S, BEFORE_S, work.path()).unwrap();
    assert_same_packets(&ours, &expected, "after the sensor came back");
}
