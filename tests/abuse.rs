//! The front door under attack, each attack reproduced with real processes: Docket over TLS
//! with an htpasswd file, curl (HTTP/1.1 and HTTP/2) and small Python socket clients for what
//! curl cannot do (an HTTP/2 client that answers pings and never asks, a body dribbled a byte
//! at a time). Bounds in these tests are generous deadlines for something to happen at all,
//! never timing measurements.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::corpus;
use common::front::{self, tls_server, tls_server_auth};
use common::server::{Server, LOG};

fn bulk() -> Vec<(&'static str, std::path::PathBuf)> {
    vec![("bulk", corpus().join("bulk"))]
}

const JOB: &str = "q/after/2023-06-01T12:00:00Z/before/2023-06-01T12:01:00Z";

/// The `host:port` of a server.
fn addr(s: &Server) -> String {
    s.base.split('/').nth(2).unwrap().to_owned()
}

/// A Python client over TLS with ALPN h2: sends the preface and an empty SETTINGS, answers
/// every PING, asks for nothing; prints "closed" when the server closes the connection.
const IDLE_H2: &str = r#"
import socket, ssl, struct, sys, time
host, port, ca, limit = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
ctx = ssl.create_default_context(cafile=ca)
ctx.set_alpn_protocols(["h2"])
s = ctx.wrap_socket(socket.create_connection((host, port)), server_hostname="localhost")
assert s.selected_alpn_protocol() == "h2"
s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + struct.pack(">I", 0)[1:] + bytes([4, 0]) + struct.pack(">I", 0))
print("open", flush=True)
s.settimeout(1.0)
buf = b""
end = time.time() + limit
while time.time() < end:
    try:
        d = s.recv(65536)
    except socket.timeout:
        continue
    except (ConnectionResetError, ssl.SSLError):
        d = b""
    if not d:
        print("closed", flush=True)
        sys.exit(0)
    buf += d
    while len(buf) >= 9:
        n = int.from_bytes(buf[:3], "big")
        if len(buf) < 9 + n:
            break
        ftype, flags, payload = buf[3], buf[4], buf[9:9 + n]
        buf = buf[9 + n:]
        if ftype == 6 and not flags & 1:
            s.sendall(struct.pack(">I", 8)[1:] + bytes([6, 1]) + struct.pack(">I", 0) + payload)
        if ftype == 4 and not flags & 1:
            s.sendall(struct.pack(">I", 0)[1:] + bytes([4, 1]) + struct.pack(">I", 0))
print("still open", flush=True)
"#;

fn idle_h2(s: &Server, limit_s: u32) -> std::process::Child {
    let a = addr(s);
    let (host, port) = a.split_once(':').unwrap();
    let mut c = Command::new("python3")
        .args(["-c", IDLE_H2, host, port])
        .arg(s.ca.as_ref().unwrap())
        .arg(limit_s.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the handshake and preface.
    let mut line = String::new();
    let mut out = BufReader::new(c.stdout.take().unwrap());
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "open");
    // Keep reading in the child's pipe: hand the reader back through stdout's owner.
    std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = out.read_to_string(&mut rest);
        rest
    });
    c
}

#[test]
fn idle_http2_connections_are_closed_and_cannot_starve_the_slots() {
    let s = tls_server(
        &bulk(),
        "[http]\nheader_timeout = 2\nidle_timeout = 3\nmax_connections = 20",
    );
    // One idle stranger is closed after header_timeout (it answers every ping).
    let mut one = idle_h2(&s, 60);
    let deadline = Instant::now() + Duration::from_secs(50);
    loop {
        if let Some(st) = one.try_wait().unwrap() {
            assert!(st.success());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the idle h2 connection was never closed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A stranger polling healthz (no login needed) is closed as well.
    let a = addr(&s);
    let (host, port) = a.split_once(':').unwrap();
    let poll = r#"
import socket, ssl, sys, time
host, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
ctx.set_alpn_protocols(["http/1.1"])
s = ctx.wrap_socket(socket.create_connection((host, port)), server_hostname="localhost")
s.settimeout(1.0)
for i in range(40):
    try:
        s.sendall(b"GET /app/docket/healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        d = s.recv(65536)
        if not d:
            print("closed"); sys.exit(0)
    except socket.timeout:
        pass
    except (OSError, ssl.SSLError):
        print("closed"); sys.exit(0)
    time.sleep(1)
print("still open")
"#;
    let out = Command::new("python3")
        .args(["-c", poll, host, port])
        .arg(s.ca.as_ref().unwrap())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "closed");
    // Twenty of them at once (all the slots): an analyst still gets in, because strangers
    // are capped at half the slots and the oldest makes room.
    let mut idle: Vec<_> = (0..20).map(|_| idle_h2(&s, 60)).collect();
    let (code, _) = s.get(JOB, &["-u", &front::user("alice")]);
    assert_eq!(code, 200, "an analyst gets through 20 idle connections");
    for c in &mut idle {
        let _ = c.kill();
        let _ = c.wait();
    }
}

#[test]
fn parallel_wrong_guesses_are_counted_before_they_are_checked() {
    let s = tls_server_auth(&bulk(), "", "max_failures = 5\nfailure_window = \"1h\"");
    // 40 wrong guesses against the bcrypt user at once.
    let kids: Vec<_> = (0..40)
        .map(|_| {
            s.curl()
                .args(["-o", "/dev/null", "-w", "%{http_code}", "-u", "bob:wrong"])
                .arg(s.url("jobs"))
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let codes: Vec<String> = kids
        .into_iter()
        .map(|k| String::from_utf8(k.wait_with_output().unwrap().stdout).unwrap())
        .collect();
    let checked = codes.iter().filter(|c| *c == "401").count();
    let refused = codes.iter().filter(|c| *c == "429").count();
    assert!(
        checked <= 5,
        "at most max_failures guesses checked: {codes:?}"
    );
    assert_eq!(checked + refused, 40, "{codes:?}");
    // The right password from the same address waits for the window too.
    assert_eq!(s.get("jobs", &["-u", &front::user("bob")]).0, 429);
}

#[test]
fn health_checks_skip_login_only_for_reading() {
    let s = tls_server(&bulk(), "");
    assert_eq!(s.get("healthz", &[]).0, 200);
    assert_eq!(s.get("healthz", &["-I"]).0, 200);
    for method in ["POST", "DELETE", "PUT"] {
        assert_eq!(s.get("healthz", &["-X", method]).0, 401, "{method}");
    }
}

#[test]
fn a_body_over_the_limit_gets_413_without_100_continue() {
    let s = tls_server(&bulk(), "");
    let dir = tempfile::TempDir::new().unwrap();
    let big = dir.path().join("big.json");
    std::fs::write(&big, vec![b' '; 2 << 20]).unwrap();
    for proto in ["--http1.1", "--http2"] {
        let out = s
            .curl()
            .args([proto, "-v", "-o", "/dev/null", "-w", "%{http_code}"])
            .args(["-u", &front::user("alice")])
            .args([
                "-H",
                "Content-Type: application/json",
                "-H",
                "Expect: 100-continue",
            ])
            .arg("--data-binary")
            .arg(format!("@{}", big.display()))
            .arg(s.url("q"))
            .output()
            .unwrap();
        let trace = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "413",
            "{proto}: {trace}"
        );
        assert!(
            !trace.contains("< HTTP/1.1 100") && !trace.contains("< HTTP/2 100"),
            "{proto}: no 100 Continue: {trace}"
        );
    }
}

#[test]
fn a_dribbled_body_is_cut_off_with_408() {
    let s = tls_server(&bulk(), "[http]\nheader_timeout = 2");
    let a = addr(&s);
    let (host, port) = a.split_once(':').unwrap();
    // Headers at once, then one byte of a 100-byte body per second.
    let script = r#"
import base64, socket, ssl, sys, time
host, port, ca, auth = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
s = ctx.wrap_socket(socket.create_connection((host, port)), server_hostname="localhost")
s.sendall(("POST /app/docket/q HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic %s\r\n"
           "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
           % base64.b64encode(auth.encode()).decode()).encode())
s.settimeout(0.5)
for i in range(60):
    try:
        d = s.recv(4096)
        if d:
            print(d.split(b"\r\n")[0].decode(), flush=True)
            sys.exit(0)
    except socket.timeout:
        pass
    try:
        s.sendall(b" ")
    except OSError:
        break
print("no answer", flush=True)
"#;
    let out = Command::new("python3")
        .args(["-c", script, host, port])
        .arg(s.ca.as_ref().unwrap())
        .arg(front::user("alice"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "HTTP/1.1 408 Request Timeout"
    );
}

#[test]
fn a_json_key_given_twice_is_a_400_naming_it() {
    let s = tls_server(&bulk(), "");
    let (code, body) = s.get(
        "q",
        &[
            "-u",
            &front::user("alice"),
            "-H",
            "Content-Type: application/json",
            "--data",
            r#"{"host": "10.0.0.1", "host": "10.0.0.2"}"#,
        ],
    );
    assert_eq!(code, 400);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["clause"], "host", "{v}");
}

#[test]
fn a_cross_site_post_with_the_wrong_scheme_is_refused() {
    let s = tls_server(&bulk(), "");
    let host = addr(&s);
    let post = |origin: &str| {
        s.get(
            "q",
            &[
                "-u",
                &front::user("alice"),
                "-H",
                &format!("Origin: {origin}"),
                "--data",
                "host=10.0.0.1",
            ],
        )
        .0
    };
    assert_eq!(
        post(&format!("http://{host}")),
        403,
        "same host, other scheme"
    );
    assert_eq!(post(&format!("https://{host}")), 200);
}

#[test]
fn head_over_http2_sends_no_body() {
    let s = tls_server(&bulk(), "");
    for path in ["healthz", JOB, &format!("{JOB}/pcap")] {
        let out = s
            .curl()
            .args([
                "--http2",
                "-I",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{http_version}",
            ])
            .args(["-u", &front::user("alice")])
            .arg(s.url(path))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "200 2", "{path}");
    }
}

#[test]
fn jobs_belong_to_their_starter() {
    let s = tls_server_auth(&bulk(), "", "max_failures = 1000\nadmins = [\"carol\"]");
    let (alice, bob, carol) = (
        front::user("alice"),
        front::user("bob"),
        front::user("carol"),
    );
    let job = |path: &str, who: &str| -> String {
        let (code, body) = s.get(path, &["-u", who]);
        assert_eq!(code, 200);
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let a = job(JOB, &alice);
    // Bob may not delete Alice's job; Alice may; Carol (an admin) may delete anyone's.
    let (code, body) = s.get(&a, &["-X", "DELETE", "-u", &bob]);
    assert_eq!(code, 403, "{}", String::from_utf8_lossy(&body));
    assert_eq!(s.get(&a, &["-X", "DELETE", "-u", &alice]).0, 200);
    let a2 = job(JOB, &alice);
    assert_eq!(s.get(&a2, &["-X", "DELETE", "-u", &carol]).0, 200);
    // Jobs are listed to everyone by default (share_jobs).
    let a3 = job(JOB, &alice);
    let (_, ids) = s.get("ids", &["-u", &bob]);
    assert!(String::from_utf8_lossy(&ids).contains(&a3));
}

#[test]
fn without_sharing_users_see_their_own_jobs() {
    let s = tls_server_auth(&bulk(), "", "max_failures = 1000\nshare_jobs = false");
    let alice = front::user("alice");
    let bob = front::user("bob");
    let (_, body) = s.get(JOB, &["-u", &alice]);
    let id = serde_json::from_slice::<serde_json::Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, ids) = s.get("ids", &["-u", &bob]);
    assert!(!String::from_utf8_lossy(&ids).contains(&id));
    let (_, ids) = s.get("ids", &["-u", &alice]);
    assert!(String::from_utf8_lossy(&ids).contains(&id));
    assert_eq!(s.get(&format!("status/{id}"), &["-u", &bob]).1, b"{}\n");
    assert_eq!(s.get(&id, &["-X", "DELETE", "-u", &bob]).0, 404);
    // Bob asking the same query shares the capture, but learns nothing of Alice's job, and
    // the link he gets works for him.
    let (_, body) = s.get(JOB, &["-u", &bob]);
    let view: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(view["id"], id.as_str());
    assert!(view["user"].is_null(), "{view}");
    let url = view["url"].as_str().unwrap();
    let rest = url.strip_prefix("/app/docket/").unwrap();
    assert_eq!(s.get(rest, &["-u", &bob]).0, 200, "{url}");
}

#[test]
fn a_killed_server_leaves_the_start_line_of_a_transfer_in_the_audit_log() {
    let dir = tempfile::TempDir::new().unwrap();
    let audit = dir.path().join("audit.log");
    let big = common::server::big_dir(dir.path());
    let conf = format!(
        "spool = false\n[audit]\npath = \"{}\"\n[[local]]\nname = \"big\"\npath = \"{}\"\n",
        audit.display(),
        big.display()
    );
    let mut s = Server::launch(tempfile::TempDir::new().unwrap(), &conf, None);
    let out = dir.path().join("cut.pcap");
    let mut curl = Command::new("curl")
        .args(["-sS", "-N", "--limit-rate", "500k", "-o"])
        .arg(&out)
        .arg(s.url(common::server::BIG_PATH))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::metadata(&out).map_or(0, |m| m.len()) < 4096 {
        assert!(Instant::now() < deadline, "the stream never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    s.child.kill().unwrap();
    s.child.wait().unwrap();
    let _ = curl.wait();
    let text = std::fs::read_to_string(&audit).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert_eq!(lines[0]["event"], "start");
    assert_eq!(lines[0]["kind"], "capture");
    assert_eq!(lines[0]["job"].as_str().unwrap().len(), 32);
}

#[test]
fn client_strings_are_escaped_in_log_lines() {
    let dir = tempfile::TempDir::new().unwrap();
    std::fs::write(dir.path().join(LOG), "").unwrap();
    let htpasswd = dir.path().join("htpasswd");
    front::write_htpasswd(&htpasswd);
    let conf = format!("[auth]\nhtpasswd = \"{}\"\n", htpasswd.display());
    let s = Server::launch(dir, &conf, None);
    let forged = "eve\n2026-11-30T00:00:00Z INFO login ok user=admin\u{1b}[2J";
    let (code, _) = s.get("jobs", &["-u", &format!("{forged}:x")]);
    assert_eq!(code, 401);
    let (code, _) = s.get("q/%0Afake%1B[31m", &["-g", "-u", &format!("{forged}:x")]);
    assert_eq!(code, 401);
    // Give the server a moment to flush its log lines (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !s.log().contains("login failed") {
        assert!(Instant::now() < deadline, "no login line: {}", s.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = s.log();
    assert!(!log.contains('\u{1b}'), "no raw escape in the log");
    assert!(
        !log.contains("\n2026-11-30T00:00:00Z INFO login ok"),
        "{log}"
    );
    assert!(log.contains("eve\\n2026"), "escaped: {log}");
}

#[test]
fn bpf_host_names_are_refused_without_a_lookup() {
    let s = tls_server(&bulk(), "");
    let (code, body) = s.get(
        &format!("{JOB}/bpf/host%20docket-test.invalid"),
        &["-u", &front::user("alice")],
    );
    assert_eq!(code, 400);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["clause"], "bpf", "{v}");
}

#[test]
fn ranges_follow_rfc_9110() {
    let s = Server::start(&bulk(), "");
    let (code, whole) = s.get(&format!("{JOB}/pcap"), &[]);
    assert_eq!(code, 200);
    let id = s.json(JOB)["id"].as_str().unwrap().to_owned();
    s.wait_final(&id);
    let file = format!("{id}/merged.pcap");
    // Several ranges, an unknown unit, a malformed spec: the whole file, 200.
    for range in ["bytes=0-1,5-6", "items=0-1", "bytes=abc", "bytes=5-2"] {
        let (code, body) = s.get(&file, &["-H", &format!("Range: {range}")]);
        assert_eq!(code, 200, "{range}");
        assert!(body == whole, "{range}");
    }
    // An end past the length (even past 2^64) is clamped.
    let (code, body) = s.get(&file, &["-H", "Range: bytes=100-99999999999999999999999"]);
    assert_eq!(code, 206);
    assert!(body[..] == whole[100..]);
    // A start past the end: 416.
    let past = format!("Range: bytes={}-", whole.len() + 10);
    assert_eq!(s.get(&file, &["-H", &past]).0, 416);
    let _ = std::io::stdout().flush();
}
