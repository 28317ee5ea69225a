//! Docket as a service, with the real parts operators use: Debian's `prometheus` scraping
//! `metrics` over TLS with a password and answering through its own HTTP API, `promtool check
//! metrics` on the exposition, `readyz` as a load balancer or systemd sees it, the JSON log
//! lines, systemd's readiness protocol on a real datagram socket (what `Type=notify` listens
//! on), and the shell completions loaded by bash.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::front::{tls_server, tls_server_auth, user, Ca, KeyKind};
use common::{corpus, docket, run_ok, tshark_packets};
use tempfile::TempDir;

const QUERY: &str =
    "q/host/2620:1ec:c11::200/port/443/after/2021-01-05T06:55:00Z/before/2021-01-05T07:00:00Z";

fn sensors() -> Vec<(&'static str, PathBuf)> {
    vec![("merge", corpus().join("merge"))]
}

/// A process this test started, killed by its PID when the test ends (passed or not).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free loopback port (bound, then released for the process that needs a fixed one).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET `url` with curl (bounded); the body.
fn curl_text(url: &str) -> String {
    String::from_utf8(run_ok(Command::new("curl").args([
        "-sS",
        "--max-time",
        "30",
        url,
    ])))
    .unwrap()
}

/// One sample's value from a Prometheus instant query (`None` while it has no result).
fn prom_value(prom: &str, query: &str) -> Option<f64> {
    let url = format!(
        "{prom}/api/v1/query?query={}",
        percent_encoding::utf8_percent_encode(query, percent_encoding::NON_ALPHANUMERIC)
    );
    // Prometheus may still be starting: no answer is "no value yet".
    let o = Command::new("curl")
        .args(["-sS", "--max-time", "30", &url])
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
    assert_eq!(v["status"], "success", "{query}: {v}");
    let r = v["data"]["result"].as_array()?.first()?.clone();
    r["value"][1].as_str()?.parse().ok()
}

/// Waits (bounded) until Prometheus answers `query` with `want`; the last value seen.
fn wait_prom(prom: &str, query: &str, want: f64) -> Option<f64> {
    let until = Instant::now() + Duration::from_secs(90);
    let mut last = None;
    while Instant::now() < until {
        last = prom_value(prom, query);
        if last == Some(want) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    last
}

#[test]
fn a_real_prometheus_scrapes_docket_over_tls_with_a_password() {
    let s = tls_server(&sensors(), "");
    let ca = s.ca.clone().unwrap();
    // Behind the same login as everything else.
    let (code, _) = s.get("metrics", &[]);
    assert_eq!(code, 401, "metrics without a user");
    let (code, _) = s.get("metrics", &["-u", "alice:wrong"]);
    assert_eq!(code, 401, "metrics with a wrong password");
    // Traffic to count: one capture, downloaded whole.
    let out = s.dir.path().join("answer.pcap");
    let fetched = s
        .curl()
        .args(["-f", "-u", &user("alice"), "-o"])
        .arg(&out)
        .arg(s.url(&format!("{QUERY}/pcap")))
        .status()
        .unwrap();
    assert!(fetched.success());
    // The oracle: what tshark counts in the file the client got.
    let packets = tshark_packets(&out).len() as f64;
    let bytes = std::fs::metadata(&out).unwrap().len() as f64;
    assert!(packets > 100.0);

    // The exposition as Prometheus asks for it (OpenMetrics), and as anything else gets it
    // (the classic text format, which Debian's promtool lints).
    let scrape = |accept: &str| {
        let o = s
            .curl()
            .args(["-u", &user("alice"), "-D", "-", "-H", accept])
            .arg(s.url("metrics"))
            .output()
            .unwrap();
        let text = String::from_utf8(o.stdout).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        (head.to_ascii_lowercase(), body.to_owned())
    };
    let (head, body) = scrape(
        "Accept: application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.1",
    );
    assert!(
        head.contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    assert!(
        body.ends_with("# EOF\n"),
        "an OpenMetrics exposition ends with # EOF"
    );
    assert!(body.contains("# TYPE docket_jobs_started counter"));
    let (head, body) = scrape("Accept: */*");
    assert!(
        head.contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(body.contains("# TYPE docket_jobs_started_total counter"));
    assert!(!body.contains("# EOF"));
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut promtool.stdin.take().unwrap(), body.as_bytes()).unwrap();
    let lint = promtool.wait_with_output().unwrap();
    assert!(
        lint.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );

    // Debian's prometheus scrapes it every second, over TLS (our CA), as alice.
    let work = TempDir::new().unwrap();
    let port = free_port();
    let target = s
        .base
        .strip_prefix("https://")
        .unwrap()
        .split_once('/')
        .unwrap()
        .0
        .replace("127.0.0.1", "localhost");
    let (user_name, password) = user("alice")
        .split_once(':')
        .map(|(u, p)| (u.to_owned(), p.to_owned()))
        .unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         scrape_configs:\n  - job_name: docket\n    scheme: https\n\
         \x20   metrics_path: /app/docket/metrics\n\
         \x20   tls_config:\n      ca_file: {}\n\
         \x20   basic_auth:\n      username: {user_name}\n      password: {password}\n\
         \x20   static_configs:\n      - targets: ['{target}']\n",
        ca.display()
    );
    std::fs::write(work.path().join("prometheus.yml"), config).unwrap();
    let prom = Killed(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                work.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                work.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(work.path().join("prometheus.log")).unwrap(),
            ))
            .spawn()
            .unwrap(),
    );
    let api = format!("http://127.0.0.1:{port}");
    let log = || std::fs::read_to_string(work.path().join("prometheus.log")).unwrap_or_default();
    assert_eq!(
        wait_prom(&api, "up{job=\"docket\"}", 1.0),
        Some(1.0),
        "the target is up in Prometheus: {}",
        log()
    );
    // What Prometheus stored is what the client received, counted by tshark.
    assert_eq!(
        wait_prom(&api, "docket_merged_packets_total", packets),
        Some(packets)
    );
    assert_eq!(
        wait_prom(&api, "docket_jobs_ended_total{state=\"Completed\"}", 1.0),
        Some(1.0)
    );
    assert_eq!(
        wait_prom(&api, "docket_served_packets_total", packets),
        Some(packets)
    );
    assert_eq!(
        wait_prom(&api, "docket_served_bytes_total{kind=\"capture\"}", bytes),
        Some(bytes)
    );
    assert_eq!(
        wait_prom(
            &api,
            "docket_captures_served_total{result=\"complete\"}",
            1.0
        ),
        Some(1.0)
    );
    assert_eq!(
        wait_prom(&api, "docket_auth_failures_total", 1.0),
        Some(1.0),
        "the one wrong password"
    );
    assert_eq!(
        wait_prom(
            &api,
            "docket_upstream_requests_total{upstream=\"merge\"}",
            1.0
        ),
        Some(1.0)
    );
    assert_eq!(
        wait_prom(
            &api,
            "docket_upstream_first_byte_seconds_count{upstream=\"merge\"}",
            1.0
        ),
        Some(1.0)
    );
    assert_eq!(
        wait_prom(&api, "docket_jobs{state=\"Completed\"}", 1.0),
        Some(1.0)
    );
    assert_eq!(
        wait_prom(&api, "docket_upstream_up{upstream=\"merge\"}", 1.0),
        Some(1.0)
    );
    let files = std::fs::read_dir(corpus().join("merge")).unwrap().count() as f64;
    assert_eq!(
        wait_prom(
            &api,
            "sum(docket_upstream_files{upstream=\"merge\",files=~\"readable|unreadable\"})",
            files
        ),
        Some(files),
        "every file of the directory, readable or not"
    );
    assert!(prom_value(&api, "docket_tls_handshakes_total{result=\"ok\"}").unwrap() >= 3.0);
    assert!(prom_value(&api, "docket_spool_free_bytes").unwrap() > 0.0);
    assert_eq!(
        prom_value(&api, "docket_build_info").map(|_| ()),
        Some(()),
        "build info is exported"
    );
    drop(prom);
}

#[test]
fn metrics_open_admits_a_scraper_without_a_login_and_nothing_else() {
    let s = tls_server_auth(
        &sensors(),
        "[http]\nmetrics_open = true",
        "max_failures = 1000",
    );
    let (code, body) = s.get("metrics", &[]);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("docket_build_info"));
    for path in ["stats", "jobs", QUERY] {
        assert_eq!(s.get(path, &[]).0, 401, "{path} still needs a user");
    }
    // A wrong password on the open route is still a wrong password.
    assert_eq!(s.get("metrics", &["-u", "alice:wrong"]).0, 401);
}

/// `docket serve` with JSON logs on stderr into `dir/stderr.log`; its readiness line's base URL.
fn serve_json(dir: &Path, conf: &str) -> (Killed, String) {
    let conf_path = dir.join("docket.toml");
    std::fs::write(
        &conf_path,
        format!(
            "listen = \"127.0.0.1:0\"\nspool_dir = \"{}\"\n{}health_period = \"1s\"\n{conf}",
            dir.join("spool").display(),
            if conf.contains("free_bytes") {
                ""
            } else {
                "free_bytes = 0\n"
            }
        ),
    )
    .unwrap();
    let mut child = docket()
        .args(["serve", "--log-format", "json", "-c"])
        .arg(&conf_path)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("stderr.log")).unwrap(),
        ))
        .spawn()
        .unwrap();
    let line = common::first_line(&mut child);
    let base = line
        .strip_prefix("docket listening on ")
        .unwrap_or_else(|| panic!("readiness line: {line:?}"))
        .to_owned();
    (Killed(child), base)
}

/// GET with curl: (status, JSON body).
fn get_json(url: &str) -> (u16, serde_json::Value) {
    let o = Command::new("curl")
        .args(["-sS", "--max-time", "30", "-w", "\n%{http_code}", url])
        .output()
        .unwrap();
    let text = String::from_utf8(o.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (
        code.parse().unwrap(),
        serde_json::from_str(body).unwrap_or_default(),
    )
}

/// Polls `readyz` (bounded) until every upstream has been checked.
fn readyz_checked(base: &str) -> (u16, serde_json::Value) {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, v) = get_json(&format!("{base}readyz"));
        let all = v["upstreams"]
            .as_object()
            .is_some_and(|m| m.values().all(|u| !u["up"].is_null()));
        if all || Instant::now() > until {
            return (code, v);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn readyz_and_the_log_say_which_upstream_is_down_and_why() {
    let work = TempDir::new().unwrap();
    // A sensor whose port is closed: real TLS material, nobody listening.
    let ca = Ca::new(&work.path().join("pki"), "sensor");
    let (cert, key) = ca.issue("client", "docket", false, KeyKind::EcSec1);
    let dead_port = free_port();
    let missing = work.path().join("unmounted-share");
    let conf = format!(
        "[[local]]\nname = \"merge\"\npath = \"{}\"\n\
         [[local]]\nname = \"share\"\npath = \"{}\"\n\
         [[stenographer]]\nname = \"dead-sensor\"\nhost = \"127.0.0.1\"\nport = {dead_port}\n\
         cert = \"{}\"\nkey = \"{}\"\nca = \"{}\"\nstats_timeout = 2\n",
        corpus().join("merge").display(),
        missing.display(),
        cert.display(),
        key.display(),
        ca.cert.display()
    );
    let (server, base) = serve_json(work.path(), &conf);
    let (code, v) = readyz_checked(&base);
    // One upstream answers: Docket can answer (in part), so it is ready.
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["ready"], true);
    assert_eq!(v["spool"]["writable"], true);
    assert_eq!(v["upstreams"]["merge"]["up"], true);
    assert_eq!(v["upstreams"]["share"]["up"], false);
    assert!(
        v["upstreams"]["share"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("unmounted-share")),
        "{v}"
    );
    assert_eq!(v["upstreams"]["dead-sensor"]["up"], false);
    assert_eq!(v["upstreams"]["dead-sensor"]["kind"], "stenographer");
    assert!(
        v["upstreams"]["dead-sensor"]["error"]
            .as_str()
            .is_some_and(|e| e.contains(&format!("127.0.0.1:{dead_port}"))),
        "{v}"
    );

    // The spool stops being writable (immutable: even root cannot create files in it).
    let spool = work.path().join("spool");
    let chattr = |flag: &str| {
        run_ok(Command::new("chattr").arg(flag).arg(&spool));
    };
    chattr("+i");
    // A probe's answer is reused for a second.
    std::thread::sleep(Duration::from_millis(1100));
    let (code, v) = get_json(&format!("{base}readyz"));
    chattr("-i");
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(code, 503, "{v}");
    assert_eq!(v["ready"], false);
    assert_eq!(v["spool"]["writable"], false);
    assert!(v["reasons"].to_string().contains("spool"), "{v}");
    let (code, _) = get_json(&format!("{base}readyz"));
    assert_eq!(code, 200, "writable again, ready again");

    // The operators' log: JSON lines, the dead sensor and the missing share at WARN, each
    // once (not once per health period) though several periods have passed.
    std::thread::sleep(Duration::from_secs(3));
    drop(server);
    let log = std::fs::read_to_string(work.path().join("stderr.log")).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() > 3);
    for l in &lines {
        assert!(
            l["timestamp"].is_string() && l["level"].is_string() && l["message"].is_string(),
            "{l}"
        );
    }
    let down = |name: &str| -> Vec<&serde_json::Value> {
        lines
            .iter()
            .filter(|l| l["message"] == "upstream down" && l["upstream"] == name)
            .collect()
    };
    let dead = down("dead-sensor");
    assert_eq!(dead.len(), 1, "one WARN line, not one per period: {log}");
    assert_eq!(dead[0]["level"], "WARN");
    assert!(
        dead[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot connect")),
        "{}",
        dead[0]
    );
    assert_eq!(down("share").len(), 1, "{log}");
    assert!(down("merge").is_empty());
}

#[test]
fn readyz_is_503_when_no_upstream_can_answer() {
    let work = TempDir::new().unwrap();
    let conf = format!(
        "[[local]]\nname = \"share\"\npath = \"{}\"\n",
        work.path().join("gone").display()
    );
    let (_server, base) = serve_json(work.path(), &conf);
    let (code, v) = readyz_checked(&base);
    assert_eq!(code, 503, "{v}");
    assert!(
        v["reasons"].to_string().contains("every upstream is down"),
        "{v}"
    );
    // Alive all the same.
    assert_eq!(curl_text(&format!("{base}healthz")), "ok\n");
}

#[test]
fn readyz_is_503_when_new_jobs_would_be_refused_for_space() {
    let work = TempDir::new().unwrap();
    // A floor no disk here meets: admission refuses every new job with 507.
    let conf = format!(
        "free_bytes = 1000000000000000000\n[[local]]\nname = \"merge\"\npath = \"{}\"\n",
        corpus().join("merge").display()
    );
    let (_server, base) = serve_json(work.path(), &conf);
    let (code, v) = readyz_checked(&base);
    assert_eq!(code, 503, "{v}");
    assert!(v["reasons"].to_string().contains("free_bytes"), "{v}");
    let (code, _) = get_json(&format!("{base}{QUERY}"));
    assert_eq!(code, 507, "and admission agrees");
}

#[test]
fn a_missing_password_file_is_said_at_start_and_in_readyz() {
    let work = TempDir::new().unwrap();
    let conf = format!(
        "[auth]\nhtpasswd = \"{}\"\n[[local]]\nname = \"merge\"\npath = \"{}\"\n",
        work.path().join("no-such-htpasswd").display(),
        corpus().join("merge").display()
    );
    let (server, base) = serve_json(work.path(), &conf);
    let (code, v) = readyz_checked(&base);
    assert_eq!(code, 503, "{v}");
    assert!(v["reasons"].to_string().contains("password file"), "{v}");
    drop(server);
    let log = std::fs::read_to_string(work.path().join("stderr.log")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("\"level\":\"ERROR\"") && l.contains("no-such-htpasswd")),
        "{log}"
    );
}

#[test]
fn a_fatal_start_error_is_one_json_line_under_json_logs() {
    let work = TempDir::new().unwrap();
    let conf = work.path().join("docket.toml");
    std::fs::write(&conf, "listen = \"127.0.0.1:0\"\nno_such_key = [\n1,\n2]\n").unwrap();
    let o = docket()
        .args(["serve", "--log-format", "json", "-c"])
        .arg(&conf)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8(o.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    let v: serde_json::Value = serde_json::from_str(err.trim()).unwrap();
    assert_eq!(v["level"], "ERROR");
    assert!(v["error"].as_str().unwrap().contains("no_such_key"), "{v}");
}

#[test]
fn readyz_shows_states_not_reasons_to_anonymous_probes() {
    let s = tls_server(
        &[
            ("merge", corpus().join("merge")),
            ("share", PathBuf::from("/nonexistent/share")),
        ],
        "health_period = \"1s\"",
    );
    let until = Instant::now() + Duration::from_secs(60);
    let v = loop {
        let (code, body) = s.get("readyz", &[]);
        // 503 while no directory has been looked at yet (starting); never 401.
        assert!(code == 200 || code == 503, "readyz needs no login: {code}");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let checked = ["merge", "share"]
            .iter()
            .all(|u| !v["upstreams"][u]["up"].is_null());
        if checked || Instant::now() > until {
            assert_eq!(code, 200, "one directory is up: {v}");
            break v;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(v["upstreams"]["share"]["up"], false);
    assert!(
        v["upstreams"]["share"]["error"].is_null(),
        "no path for strangers: {v}"
    );
    let (_, body) = s.get("readyz", &["-u", &user("alice")]);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(
        v["upstreams"]["share"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("/nonexistent/share")),
        "a user sees why: {v}"
    );
}

#[test]
fn systemd_hears_ready_when_docket_listens_and_stopping_on_sigterm() {
    use std::os::unix::net::UnixDatagram;
    let work = TempDir::new().unwrap();
    // The socket systemd gives a Type=notify service, made here the same way.
    let path = work.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    std::fs::write(
        work.path().join("docket.toml"),
        format!(
            "listen = \"127.0.0.1:0\"\nspool_dir = \"{}\"\nfree_bytes = 0\nshutdown_grace = \"1s\"\n\
             [[local]]\nname = \"merge\"\npath = \"{}\"\n",
            work.path().join("spool").display(),
            corpus().join("merge").display()
        ),
    )
    .unwrap();
    let mut child = docket()
        .args(["serve", "-c"])
        .arg(work.path().join("docket.toml"))
        .env("NOTIFY_SOCKET", &path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("a notification within 60 s");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    let lines: Vec<&str> = msg.lines().collect();
    assert!(lines.contains(&"READY=1"), "{msg}");
    let line = common::first_line(&mut child);
    let base = line.strip_prefix("docket listening on ").unwrap();
    assert!(
        lines.contains(&format!("STATUS={line}").as_str()),
        "the status names where it listens: {msg}"
    );
    // Ready means answering: the very next request is served.
    assert_eq!(curl_text(&format!("{base}healthz")), "ok\n");
    // SAFETY: signals the process this test started, by its PID.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let n = sock.recv(&mut buf).expect("a notification within 60 s");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.lines().any(|l| l == "STOPPING=1"), "{msg}");
    assert!(child.wait().unwrap().success());
}

#[test]
fn an_abstract_notify_socket_hears_ready_too() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let work = TempDir::new().unwrap();
    let name = format!("docket-test-{}", std::process::id());
    let sock = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(&name).unwrap()).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    std::fs::write(
        work.path().join("docket.toml"),
        format!(
            "listen = \"127.0.0.1:0\"\nspool_dir = \"{}\"\nfree_bytes = 0\n",
            work.path().join("spool").display()
        ),
    )
    .unwrap();
    let child = docket()
        .args(["serve", "-c"])
        .arg(work.path().join("docket.toml"))
        .env("NOTIFY_SOCKET", format!("@{name}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let _server = Killed(child);
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("a notification within 60 s");
    assert!(String::from_utf8_lossy(&buf[..n])
        .lines()
        .any(|l| l == "READY=1"));
}

#[test]
fn bash_loads_the_completions_and_man_renders_the_pages() {
    let script = run_ok(docket().args(["completions", "bash"]));
    let work = TempDir::new().unwrap();
    let file = work.path().join("docket.bash");
    std::fs::write(&file, script).unwrap();
    // Loaded as bash-completion loads it; then completing `docket se` offers `serve`.
    let o = run_ok(Command::new("bash").arg("-c").arg(format!(
        "source {}; COMP_WORDS=(docket se); COMP_CWORD=1; COMP_LINE='docket se'; \
         COMP_POINT=9; _docket docket se docket; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        file.display()
    )));
    let offered = String::from_utf8(o).unwrap();
    assert!(offered.lines().any(|l| l == "serve"), "{offered}");
    let man = work.path().join("man");
    run_ok(docket().arg("man").arg(&man));
    for page in [
        "docket.1",
        "docket-serve.1",
        "docket-merge.1",
        "docket-gen-cert.1",
    ] {
        // groff renders it without a warning (what lintian's man check runs).
        let o = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(man.join(page))
            .output()
            .unwrap();
        assert!(o.status.success(), "{page}");
        assert!(
            o.stderr.is_empty(),
            "{page}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let serve = std::fs::read_to_string(man.join("docket-serve.1")).unwrap();
    assert!(
        serve.contains("log\\-format"),
        "the page is the command line's own"
    );
}

/// A sample's value in a classic-format exposition (`name{labels}` exactly as written).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[test]
fn cleanup_and_lockouts_are_counted() {
    let s = tls_server_auth(
        &sensors(),
        "expire_time = 1\ncleanup_period = \"1h\"",
        "max_failures = 2\nfailure_window = 2",
    );
    let out = s.dir.path().join("answer.pcap");
    let ok = s
        .curl()
        .args(["-f", "-u", &user("alice"), "-o"])
        .arg(&out)
        .arg(s.url(&format!("{QUERY}/pcap")))
        .status()
        .unwrap();
    assert!(ok.success());
    // What the cleanup frees is the capture the client got, byte for byte.
    let size = std::fs::metadata(&out).unwrap().len() as f64;
    // Unused for more than `expire_time`, then the cleanup is asked for.
    std::thread::sleep(Duration::from_millis(2100));
    let (code, _) = s.get("cleanup", &["-u", &user("alice")]);
    assert_eq!(code, 200);
    let metrics = |s: &common::server::Server| {
        let (code, body) = s.get("metrics", &["-u", &user("alice")]);
        assert_eq!(code, 200);
        String::from_utf8(body).unwrap()
    };
    let until = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = metrics(&s);
        if sample(&text, "docket_cleanup_deleted_captures_total") == Some(1.0)
            || Instant::now() > until
        {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        sample(&text, "docket_cleanup_deleted_captures_total"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "docket_cleanup_freed_bytes_total"),
        Some(size)
    );
    assert!(
        sample(&text, "docket_cleanup_runs_total").unwrap() >= 2.0,
        "at start and when asked"
    );
    assert_eq!(sample(&text, "docket_spool_captures"), Some(0.0));
    // Two wrong passwords from this address, then the lock: refused unchecked.
    for expect in [401, 401, 429, 429] {
        assert_eq!(s.get("jobs", &["-u", "bob:wrong"]).0, expect);
    }
    // The window (2 s) ends; then the counters can be read from this address again.
    std::thread::sleep(Duration::from_millis(2200));
    let text = metrics(&s);
    assert_eq!(
        sample(&text, "docket_auth_failures_total"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(sample(&text, "docket_auth_lockouts_total"), Some(2.0));
}
