//! The front door over real loopback TLS: certificates and CAs made by `openssl`, passwords
//! by `openssl passwd -apr1` and Debian's `htpasswd` (`-B`, `-s`), curl (and raw sockets for
//! the hostile clients) against the real `docket serve`. The route table is walked from
//! `docket::http::api::ROUTES`, not listed here.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::corpus;
use common::front::{self, tls_server, write_htpasswd, Ca, KeyKind, USERS};
use common::server::Server;
use tempfile::TempDir;

/// A syntactically valid job id that no job has.
const SOME_ID: &str = "0123456789abcdef0123456789abcdef";

fn sensors() -> Vec<(&'static str, PathBuf)> {
    vec![("merge", corpus().join("merge"))]
}

fn method_args(method: &str) -> Vec<String> {
    let mut v = vec!["-X".to_owned(), method.to_owned()];
    if method == "POST" {
        v.extend(["-H".into(), "Content-Type: application/json".into()]);
        v.extend(["--data".into(), "{\"host\":\"10.0.0.1\"}".into()]);
    }
    v
}

#[test]
fn every_route_refuses_requests_without_a_valid_user() {
    let s = tls_server(&sensors(), "");
    let attempts: &[(&str, Vec<&str>)] = &[
        ("no credentials", vec![]),
        ("wrong password", vec!["-u", "alice:not-her-password"]),
        ("unknown user", vec!["-u", "mallory:apr1-secret"]),
        (
            "bcrypt user, other's password",
            vec!["-u", "bob:sha-secret"],
        ),
    ];
    assert!(docket::http::api::ROUTES.len() > 10);
    for (method, path) in docket::http::api::ROUTES {
        let path = path.replace("{id}", SOME_ID);
        for (what, creds) in attempts {
            let mut args = method_args(method);
            args.extend(creds.iter().map(|s| s.to_string()));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let (code, body) = s.get(&path, &args);
            assert_eq!(
                code,
                401,
                "{method} {path} with {what}: {}",
                String::from_utf8_lossy(&body)
            );
        }
    }
    // Outside the prefix too: no 404 before authentication.
    let (code, _) = s.get("../../elsewhere", &["--path-as-is"]);
    assert_eq!(code, 401);
    // The health check alone is open.
    let (code, body) = s.get("healthz", &[]);
    assert_eq!((code, body.as_slice()), (200, b"ok\n".as_slice()));
}

#[test]
fn apr1_bcrypt_and_sha_entries_log_in() {
    let s = tls_server(&sensors(), "");
    for (user, _, kind) in USERS {
        for route in ["", "jobs", "ui/jobs", "ui/sensors", "stats"] {
            let (code, body) = s.get(route, &["-u", &front::user(user)]);
            assert_eq!(
                code,
                200,
                "{kind} user {user} on {route:?}: {}",
                String::from_utf8_lossy(&body)
            );
        }
    }
}

#[test]
fn the_password_file_is_reread_when_it_changes() {
    let s = tls_server(&sensors(), "");
    let (code, _) = s.get("jobs", &["-u", "dave:new-secret"]);
    assert_eq!(code, 401);
    let pw = s.dir.path().join("htpasswd");
    common::run_ok(
        Command::new("htpasswd")
            .arg("-bB")
            .arg(&pw)
            .args(["dave", "new-secret"]),
    );
    let (code, _) = s.get("jobs", &["-u", "dave:new-secret"]);
    assert_eq!(
        code, 200,
        "a user added with htpasswd -B is accepted at once"
    );
    // A changed password: the old one (verified, and remembered, a moment ago) is refused.
    assert_eq!(s.get("jobs", &["-u", &front::user("bob")]).0, 200);
    common::run_ok(
        Command::new("htpasswd")
            .arg("-bB")
            .arg(&pw)
            .args(["bob", "changed-secret"]),
    );
    assert_eq!(s.get("jobs", &["-u", &front::user("bob")]).0, 401);
    assert_eq!(s.get("jobs", &["-u", "bob:changed-secret"]).0, 200);
    // A removed user is refused.
    common::run_ok(Command::new("htpasswd").arg("-D").arg(&pw).arg("dave"));
    assert_eq!(s.get("jobs", &["-u", "dave:new-secret"]).0, 401);
}

#[test]
fn security_headers_on_every_answer() {
    let s = tls_server(&sensors(), "");
    let out = s
        .curl()
        .args(["-D", "-", "-o", "/dev/null", "-u", &front::user("alice")])
        .arg(s.url(""))
        .output()
        .unwrap();
    let h = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    for want in [
        "strict-transport-security: max-age=",
        "x-frame-options: deny",
        "x-content-type-options: nosniff",
        "content-security-policy: default-src 'none'; script-src 'self'",
    ] {
        assert!(h.contains(want), "missing {want:?} in\n{h}");
    }
    assert!(!h.contains("set-cookie"), "Docket sets no cookies");
    // A 401 carries them too, and the Basic challenge.
    let out = s
        .curl()
        .args(["-D", "-", "-o", "/dev/null"])
        .arg(s.url("jobs"))
        .output()
        .unwrap();
    let h = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(
        h.contains("www-authenticate: basic realm=\"docket\""),
        "{h}"
    );
    assert!(h.contains("x-frame-options: deny"), "{h}");
}

#[test]
fn failed_logins_are_rate_limited_per_address() {
    let dir = TempDir::new().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    write_htpasswd(&htpasswd);
    let conf = format!(
        "[auth]\nhtpasswd = \"{}\"\nmax_failures = 3\nfailure_window = 3600\n",
        htpasswd.display()
    );
    let s = Server::launch(dir, &conf, None);
    for _ in 0..3 {
        assert_eq!(s.get("jobs", &["-u", "alice:wrong"]).0, 401);
    }
    // Locked out: even the right password is refused until the window ends.
    assert_eq!(s.get("jobs", &["-u", &front::user("alice")]).0, 429);
    assert_eq!(s.get("healthz", &[]).0, 200);
}

#[test]
fn tls_12_and_13_alpn_and_every_key_format() {
    for kind in [KeyKind::RsaPkcs8, KeyKind::RsaPkcs1, KeyKind::EcSec1] {
        let dir = TempDir::new().unwrap();
        let ca = Ca::new(&dir.path().join("pki"), "server");
        let (cert, key) = ca.issue("server", "localhost", true, kind);
        let conf = format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            cert.display(),
            key.display()
        );
        let s = Server::launch(dir, &conf, Some(ca.cert.clone()));
        assert!(s.base.starts_with("https://"), "{}", s.base);
        for (flags, version) in [
            (&["--tlsv1.2", "--tls-max", "1.2"][..], "TLSv1.2"),
            (&["--tlsv1.3"][..], "TLSv1.3"),
        ] {
            let o = s
                .curl()
                .args([
                    "-v",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code} %{http_version}",
                ])
                .args(flags)
                .arg(s.url("healthz"))
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(
                String::from_utf8_lossy(&o.stdout),
                "200 2",
                "{kind:?} {version}: {err}"
            );
            assert!(
                err.contains(&format!("SSL connection using {version}")),
                "{kind:?}: {err}"
            );
            assert!(err.contains("ALPN: server accepted h2"), "{kind:?}: {err}");
        }
        let (code, _) = s.get("healthz", &["--http1.1"]);
        assert_eq!(code, 200, "{kind:?} over HTTP/1.1");
    }
}

#[test]
fn client_certificates_from_the_configured_ca_only() {
    let dir = TempDir::new().unwrap();
    let pki = dir.path().join("pki");
    let server_ca = Ca::new(&pki, "server");
    let (cert, key) = server_ca.issue("server", "localhost", true, KeyKind::EcSec1);
    let clients = Ca::new(&pki, "clients");
    let (good_cert, good_key) = clients.issue("soar", "soar-bot", false, KeyKind::EcSec1);
    let other = Ca::new(&pki, "other");
    let (bad_cert, bad_key) = other.issue("mallory", "soar-bot", false, KeyKind::RsaPkcs8);
    let htpasswd = dir.path().join("htpasswd");
    write_htpasswd(&htpasswd);
    let audit = dir.path().join("audit.log");
    let conf = format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\n[auth]\nhtpasswd = \"{}\"\n[audit]\npath = \"{}\"\n",
        cert.display(),
        key.display(),
        clients.cert.display(),
        htpasswd.display(),
        audit.display()
    );
    let s = Server::launch(dir, &conf, Some(server_ca.cert.clone()));
    let with = |c: &PathBuf, k: &PathBuf, rest: &str| {
        s.get(
            rest,
            &["--cert", c.to_str().unwrap(), "--key", k.to_str().unwrap()],
        )
    };
    let (code, _) = with(&good_cert, &good_key, "jobs");
    assert_eq!(code, 200, "a certificate from the configured CA is a user");
    // Its subject CN is the user name (seen in the audit log).
    let (code, _) = with(&good_cert, &good_key, "q/host/10.0.0.1/after/5m");
    assert_eq!(code, 200);
    let log = std::fs::read_to_string(&audit).unwrap();
    assert!(log.contains("\"user\":\"soar-bot\""), "{log}");
    // Another CA's certificate with the same subject: no HTTP answer, or 401.
    let (code, _) = with(&bad_cert, &bad_key, "jobs");
    assert!(code == 0 || code == 401, "foreign CA gave {code}");
    // No certificate: passwords still work (client certificates are optional here).
    assert_eq!(s.get("jobs", &[]).0, 401);
    assert_eq!(s.get("jobs", &["-u", &front::user("carol")]).0, 200);
}

#[test]
fn a_required_client_certificate_refuses_the_handshake_without_one() {
    let dir = TempDir::new().unwrap();
    let pki = dir.path().join("pki");
    let server_ca = Ca::new(&pki, "server");
    let (cert, key) = server_ca.issue("server", "localhost", true, KeyKind::EcSec1);
    let clients = Ca::new(&pki, "clients");
    let (good_cert, good_key) = clients.issue("soar", "soar-bot", false, KeyKind::EcSec1);
    let conf = format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\nrequire_client_cert = true\n",
        cert.display(),
        key.display(),
        clients.cert.display(),
    );
    let s = Server::launch(dir, &conf, Some(server_ca.cert.clone()));
    assert_eq!(s.get("jobs", &[]).0, 0, "no certificate, no TLS session");
    let args = [
        "--cert",
        good_cert.to_str().unwrap(),
        "--key",
        good_key.to_str().unwrap(),
    ];
    assert_eq!(s.get("jobs", &args).0, 200);
}

#[test]
fn path_traversal_in_ids_is_refused() {
    let s = tls_server(&sensors(), "");
    let alice = front::user("alice");
    for path in [
        "../../../../etc/passwd",
        "../../../../etc/passwd/merged.pcap",
        "..%2f..%2f..%2f..%2fetc%2fpasswd/merged.pcap",
        "%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd/merged.pcap",
        "%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/etc/passwd/merged.pcap",
        "%2fetc%2fpasswd/merged.pcap",
        "ui/job/..%2f..%2f..%2fetc%2fpasswd",
    ] {
        let (code, body) = s.get(path, &["--path-as-is", "-u", &alice]);
        assert!(
            (400..500).contains(&code),
            "{path}: {code} {}",
            String::from_utf8_lossy(&body)
        );
        assert!(!String::from_utf8_lossy(&body).contains("root:"), "{path}");
    }
}

#[test]
fn cross_site_posts_are_refused() {
    let s = tls_server(&sensors(), "");
    let alice = front::user("alice");
    let post = |headers: &[&str]| {
        let mut args = vec![
            "-u",
            &alice,
            "-H",
            "Content-Type: application/json",
            "--data",
            "{\"host\":\"10.0.0.1\",\"after-ago\":\"5m\"}",
        ];
        for h in headers {
            args.extend(["-H", h]);
        }
        s.get("q", &args).0
    };
    assert_eq!(post(&["Sec-Fetch-Site: cross-site"]), 403);
    assert_eq!(post(&["Origin: https://evil.example"]), 403);
    assert_eq!(post(&["Sec-Fetch-Site: same-origin"]), 200);
    let host = s.base.split('/').nth(2).unwrap().to_owned();
    assert_eq!(post(&[&format!("Origin: https://{host}")]), 200);
    assert_eq!(post(&[]), 200, "a script without browser headers");
}

#[test]
fn oversized_bodies_get_413() {
    let s = tls_server(&sensors(), "");
    let big = s.dir.path().join("big.json");
    std::fs::write(&big, vec![b' '; 200 * 1024]).unwrap();
    let (code, _) = s.get(
        "q",
        &[
            "-u",
            &front::user("alice"),
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &format!("@{}", big.display()),
        ],
    );
    assert_eq!(code, 413);
}

/// Sends `bytes` one per second until the server closes; returns how many it took.
fn dribble(addr: &str, bytes: &[u8]) -> usize {
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(1000)))
        .unwrap();
    for (i, b) in bytes.iter().enumerate() {
        if sock.write_all(&[*b]).is_err() {
            return i;
        }
        let mut buf = [0u8; 512];
        match sock.read(&mut buf) {
            // Closed (possibly after a 408 or a TLS alert).
            Ok(0) | Err(_) if !would_block(&sock) => return i + 1,
            Ok(n) if n > 0 => {
                // An answer: keep reading until the close.
                let _ = sock.set_read_timeout(Some(Duration::from_secs(5)));
                let mut rest = Vec::new();
                let _ = sock.read_to_end(&mut rest);
                return i + 1;
            }
            _ => {}
        }
    }
    bytes.len()
}

fn would_block(sock: &TcpStream) -> bool {
    // A read timeout leaves the socket open: peek tells a close (Ok(0)) from "nothing yet".
    sock.set_nonblocking(true).unwrap();
    let mut b = [0u8; 1];
    let r = sock.peek(&mut b);
    sock.set_nonblocking(false).unwrap();
    matches!(r, Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

#[test]
fn slow_header_clients_are_cut_off() {
    // header_timeout = 2 s; a request line plus headers of 120 bytes at one byte a second
    // would take two minutes: the server must close long before the client is done.
    let long_request = format!(
        "GET /app/docket/healthz HTTP/1.1\r\nHost: x\r\nX-Padding: {}\r\n\r\n",
        "a".repeat(70)
    );
    assert!(long_request.len() >= 120);

    let plain = Server::launch(
        TempDir::new().unwrap(),
        "[http]\nheader_timeout = 2\n",
        None,
    );
    let addr = plain.base.split('/').nth(2).unwrap().to_owned();
    // The same request sent at once is answered: the cut is about pace, not content.
    let mut fast = TcpStream::connect(&addr).unwrap();
    fast.write_all(
        long_request
            .replace("HTTP/1.1\r\n", "HTTP/1.1\r\nConnection: close\r\n")
            .as_bytes(),
    )
    .unwrap();
    let mut answer = String::new();
    fast.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let sent = dribble(&addr, long_request.as_bytes());
    eprintln!("plain HTTP: cut off after {sent} bytes at one a second");
    assert!(
        sent < long_request.len(),
        "plain HTTP: the whole request went through a byte a second"
    );

    // Over TLS: a client that dribbles its handshake (a record header announcing 512 bytes).
    let tls = tls_server(&sensors(), "[http]\nheader_timeout = 2\n");
    let addr = tls.base.split('/').nth(2).unwrap().to_owned();
    let mut hello = vec![0x16, 0x03, 0x01, 0x02, 0x00];
    hello.extend(std::iter::repeat_n(0x01, 512));
    let sent = dribble(&addr, &hello);
    eprintln!("TLS: cut off after {sent} handshake bytes at one a second");
    assert!(sent < hello.len(), "TLS: the handshake was never cut off");
}

#[test]
fn sighup_reloads_the_certificate_without_dropping_a_live_stream() {
    let s = tls_server(&[("bulk", corpus().join("bulk"))], "");
    let pki = s.dir.path().join("pki");
    let alice = front::user("alice");
    // A stream held open for a few seconds by a slow reader.
    let query = "q/sensor/bulk/after/2000-01-01T00:00:00Z/pcap";
    let slow_out = s.dir.path().join("slow.pcap");
    let mut slow = s
        .curl()
        .args(["--limit-rate", "2M", "-u", &alice, "-o"])
        .arg(&slow_out)
        .arg(s.url(query))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let slow = Kill(&mut slow);
    // Wait until bytes flow, so the reload happens mid-stream.
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(&slow_out).map(|m| m.len()).unwrap_or(0) == 0 {
        assert!(Instant::now() < deadline, "the stream never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let subject = |s: &Server| {
        let o = s
            .curl()
            .args(["-v", "-o", "/dev/null"])
            .arg(s.url("healthz"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        err.lines()
            .find(|l| l.contains("subject:"))
            .unwrap_or("")
            .to_owned()
    };
    assert!(subject(&s).contains("CN=localhost"), "{}", subject(&s));
    // A new pair from the same CA, written over the configured files.
    let (cert, key) = reissue(&pki);
    std::fs::copy(&cert, pki.join("server.pem")).unwrap();
    std::fs::copy(&key, pki.join("server.key")).unwrap();
    // SAFETY: kill(2) on the PID of the child this test started.
    unsafe {
        libc::kill(s.child.id() as i32, libc::SIGHUP);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !subject(&s).contains("CN=reloaded") {
        assert!(
            Instant::now() < deadline,
            "the new certificate never showed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The stream that began before the reload ends whole.
    let status = slow.0.wait().unwrap();
    assert!(status.success(), "slow stream: {status:?}");
    let (code, whole) = s.get(query, &["-u", &alice]);
    assert_eq!(code, 200);
    let got = std::fs::read(&slow_out).unwrap();
    assert_eq!(got.len(), whole.len());
    assert!(got == whole, "the slow stream differs from the capture");
}

/// A new server certificate (CN=reloaded) signed by the test's server CA in `pki`.
fn reissue(pki: &std::path::Path) -> (PathBuf, PathBuf) {
    let stem = format!("reloaded-{}", common::server::rand_suffix());
    let key = pki.join(format!("{stem}.key"));
    let csr = pki.join(format!("{stem}.csr"));
    let cert = pki.join(format!("{stem}.pem"));
    let ext = pki.join(format!("{stem}.ext"));
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    common::run_ok(
        Command::new("openssl")
            .args([
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
            ])
            .arg(&key),
    );
    common::run_ok(
        Command::new("openssl")
            .args(["req", "-new", "-subj", "/CN=reloaded", "-key"])
            .arg(&key)
            .arg("-out")
            .arg(&csr),
    );
    common::run_ok(
        Command::new("openssl")
            .args(["x509", "-req", "-days", "2", "-CAcreateserial", "-in"])
            .arg(&csr)
            .arg("-CA")
            .arg(pki.join("server-ca.pem"))
            .arg("-CAkey")
            .arg(pki.join("server-ca.key"))
            .arg("-extfile")
            .arg(&ext)
            .arg("-out")
            .arg(&cert),
    );
    (cert, key)
}

#[test]
fn the_audit_log_has_one_line_per_packet_request() {
    let dir = TempDir::new().unwrap();
    let audit = dir.path().join("audit.log");
    let htpasswd = dir.path().join("htpasswd");
    write_htpasswd(&htpasswd);
    let conf = format!(
        "[auth]\nhtpasswd = \"{}\"\n[audit]\npath = \"{}\"\n[http]\ntrusted_proxies = [\"127.0.0.1\"]\n\
         [[local]]\nname = \"merge\"\npath = \"{}\"\n",
        htpasswd.display(),
        audit.display(),
        corpus().join("merge").display()
    );
    let s = Server::launch(dir, &conf, None);
    let bob = front::user("bob");
    let q = "q/sensor/merge/after/2000-01-01T00:00:00Z/pcap";
    let (code, body) = s.get(q, &["-u", &bob, "-H", "X-Forwarded-For: 198.51.100.7"]);
    assert_eq!(code, 200);
    let (code, _) = s.get("q/port/70000", &["-u", &bob]);
    assert_eq!(code, 400);
    // Not a packet request: no line.
    assert_eq!(s.get("jobs", &["-u", &bob]).0, 200);
    // The end line is written when the body ends, which is after curl has it: wait for it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let lines = loop {
        let text = std::fs::read_to_string(&audit).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|l| l["event"] == "end")
            .collect();
        if lines.len() >= 2 {
            break lines;
        }
        assert!(Instant::now() < deadline, "audit lines missing: {text}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(lines.len(), 2, "{lines:?}");
    let cap = lines.iter().find(|l| l["status"] == 200).unwrap();
    assert_eq!(cap["user"], "bob");
    assert_eq!(
        cap["client"], "198.51.100.7",
        "X-Forwarded-For from a trusted proxy"
    );
    assert_eq!(cap["kind"], "capture");
    assert_eq!(cap["bytes"], body.len() as u64);
    assert_eq!(cap["result"], "complete");
    assert_eq!(cap["job"].as_str().unwrap().len(), 32);
    assert!(cap["query"].as_str().unwrap().contains("merge"), "{cap}");
    // Each end line has a start line with the same request id, written before the body.
    let text = std::fs::read_to_string(&audit).unwrap();
    let start = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|l| l["event"] == "start" && l["request"] == cap["request"])
        .expect("a start line");
    assert_eq!(start["user"], "bob");
    assert_eq!(start["job"], cap["job"]);
    let bad = lines.iter().find(|l| l["status"] == 400).unwrap();
    assert_eq!(bad["client"], "127.0.0.1");
    assert_eq!(bad["job"], serde_json::Value::Null);
    // The job JSON names the same job.
    let status = s.get("status", &["-u", &bob]).1;
    let status: serde_json::Value = serde_json::from_slice(&status).unwrap();
    assert!(status.get(cap["job"].as_str().unwrap()).is_some());
}

#[test]
fn a_client_that_leaves_early_is_audited_as_disconnected_with_the_bytes_it_got() {
    let dir = TempDir::new().unwrap();
    let audit = dir.path().join("audit.log");
    let conf = format!(
        "[audit]\npath = \"{}\"\n[[local]]\nname = \"bulk\"\npath = \"{}\"\n",
        audit.display(),
        corpus().join("bulk").display()
    );
    let s = Server::launch(dir, &conf, None);
    let q = "q/sensor/bulk/after/2000-01-01T00:00:00Z/pcap";
    // The whole capture first (a spool hit afterwards), for its size.
    let (code, whole) = s.get(q, &[]);
    assert_eq!(code, 200);
    assert!(
        whole.len() > 8 << 20,
        "the bulk capture outgrows the socket buffers"
    );
    // A raw client reads 1000 bytes of the answer and hangs up.
    let addr = s.base.split('/').nth(2).unwrap().to_owned();
    let mut sock = TcpStream::connect(&addr).unwrap();
    write!(sock, "GET /app/docket/{q} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut buf = vec![0u8; 1000];
    sock.read_exact(&mut buf).unwrap();
    assert!(buf.starts_with(b"HTTP/1.1 200"));
    drop(sock);
    let deadline = Instant::now() + Duration::from_secs(30);
    let lines = loop {
        let text = std::fs::read_to_string(&audit).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|l| l["event"] == "end")
            .collect();
        if lines.len() >= 2 {
            break lines;
        }
        assert!(Instant::now() < deadline, "audit lines missing: {text}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(lines[0]["result"], "complete", "{}", lines[0]);
    assert_eq!(lines[0]["bytes"], whole.len() as u64);
    assert_eq!(
        lines[0]["user"],
        serde_json::Value::Null,
        "no [auth]: no user"
    );
    assert_eq!(lines[1]["result"], "disconnected", "{}", lines[1]);
    let sent = lines[1]["bytes"].as_u64().unwrap();
    assert!(sent < whole.len() as u64, "{}", lines[1]);
}

#[test]
fn gen_cert_makes_a_pair_docket_serves_and_curl_trusts() {
    let dir = TempDir::new().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    common::run_ok(
        common::docket()
            .arg("gen-cert")
            .arg("--cert")
            .arg(&cert)
            .arg("--key")
            .arg(&key),
    );
    // openssl reads it: CN and the loopback names.
    let text = String::from_utf8(common::run_ok(
        Command::new("openssl")
            .args([
                "x509",
                "-noout",
                "-subject",
                "-ext",
                "subjectAltName",
                "-in",
            ])
            .arg(&cert),
    ))
    .unwrap();
    assert!(text.contains("CN = localhost"), "{text}");
    assert!(text.contains("IP Address:127.0.0.1"), "{text}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // It does not overwrite without --force.
    let again = common::docket()
        .arg("gen-cert")
        .arg("--cert")
        .arg(&cert)
        .arg("--key")
        .arg(&key)
        .output()
        .unwrap();
    assert!(!again.status.success());
    let conf = format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    );
    // The self-signed certificate is its own CA for curl.
    let s = Server::launch(dir, &conf, Some(cert.clone()));
    assert_eq!(s.get("healthz", &[]).0, 200);
}
