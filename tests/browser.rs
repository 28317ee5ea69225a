//! The web UI in a real browser: Debian's headless Chromium driven through chromedriver (W3C
//! WebDriver: JSON over HTTP on loopback, spoken here with a few lines over a `TcpStream`
//! rather than a WebDriver crate and its dependency tree) against the real `docket serve` on
//! the sample captures, over TLS, with a password.
//!
//! The test fills the query form, submits, watches the job page reach "Completed", clicks
//! "Get PCAP" (the browser downloads into the test's directory), and checks the download
//! against the API's capture of the same query and, packet count, against tcpdump over the
//! input files. A bad field must show its error next to the field. Screenshots of the pages
//! go to `target/ui-screenshots/`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::corpus;
use common::front::{self, tls_server};
use serde_json::{json, Value};

/// How long any single wait may take before the test fails (a hang guard, not a timing claim).
const WAIT: Duration = Duration::from_secs(60);

/// One HTTP/1.1 exchange with chromedriver.
fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> Value {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // chromedriver may keep the connection open: read the head, then what it announces.
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut r = BufReader::new(s);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        assert!(
            r.read_line(&mut line).unwrap() > 0,
            "{method} {path}: no answer"
        );
        if line == "\r\n" {
            break;
        }
        head.push_str(&line.to_ascii_lowercase());
    }
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse::<usize>().unwrap());
    let payload = match len {
        Some(n) => {
            let mut p = vec![0; n];
            r.read_exact(&mut p).unwrap();
            p
        }
        None => {
            let mut raw = Vec::new();
            r.read_to_end(&mut raw).unwrap();
            if head.contains("transfer-encoding: chunked") {
                dechunk(&raw)
            } else {
                raw
            }
        }
    };
    serde_json::from_slice(&payload).unwrap_or_else(|e| {
        panic!(
            "{method} {path}: {e}: {}",
            String::from_utf8_lossy(&payload)
        )
    })
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let n =
            usize::from_str_radix(std::str::from_utf8(&b[..line_end]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[line_end + 2..line_end + 2 + n]);
        b = &b[line_end + 4 + n..];
    }
}

/// chromedriver and one browser session; both end on drop (session first, so the browser
/// closes; then chromedriver, by PID).
struct Browser {
    driver: Child,
    port: u16,
    session: String,
}

impl Browser {
    fn start(download_dir: &Path, profile: &Path) -> Browser {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            // Date pickers are read in the browser's zone: make it UTC.
            .env("TZ", "UTC")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian package chromium-driver) must be installed");
        // Readiness is chromedriver's own line.
        let mut out = BufReader::new(driver.stdout.take().unwrap());
        let mut line = String::new();
        while !line.contains("started successfully") {
            line.clear();
            if out.read_line(&mut line).unwrap() == 0 {
                let _ = driver.kill();
                panic!("chromedriver exited before it was ready");
            }
        }
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        let mut b = Browser {
            driver,
            port,
            session: String::new(),
        };
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            // The test CA is not in the browser's store.
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                // Root in a container: Chromium's sandbox needs user namespaces it may not have.
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,1100", format!("--user-data-dir={}", profile.display())],
                "prefs": {
                    "download.default_directory": download_dir.to_str().unwrap(),
                    "download.prompt_for_download": false,
                }
            }
        }}});
        let r = b.call("POST", "/session", Some(&caps));
        b.session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {r}"))
            .to_owned();
        b
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        http(self.port, method, path, body)
    }

    fn cmd(&self, method: &str, rest: &str, body: Option<Value>) -> Value {
        let r = self.call(
            method,
            &format!("/session/{}{rest}", self.session),
            body.as_ref(),
        );
        if r["value"].get("error").is_some() {
            panic!("{method} {rest}: {}", r["value"]);
        }
        r["value"].clone()
    }

    fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    fn url(&self) -> String {
        self.cmd("GET", "/url", None).as_str().unwrap().to_owned()
    }

    fn find(&self, css: &str) -> String {
        let v = self.cmd(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap()
            .to_owned()
    }

    fn text(&self, css: &str) -> String {
        let e = self.find(css);
        self.cmd("GET", &format!("/element/{e}/text"), None)
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    fn typ(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.cmd("POST", &format!("/element/{e}/clear"), Some(json!({})));
        self.cmd(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        );
    }

    fn click(&self, css: &str) {
        let e = self.find(css);
        self.cmd("POST", &format!("/element/{e}/click"), Some(json!({})));
    }

    fn property(&self, css: &str, name: &str) -> Value {
        let e = self.find(css);
        self.cmd("GET", &format!("/element/{e}/property/{name}"), None)
    }

    /// Sets an input's value as a date picker would (typing into `datetime-local` depends on
    /// the locale's field order), then fires `change`.
    fn set_value(&self, css: &str, value: &str) {
        let e = self.find(css);
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({
                "script": "arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('change'));",
                "args": [{"element-6066-11e4-a52e-4f735466cecf": e}, value],
            })),
        );
    }

    fn wait_for(&self, what: &str, mut ok: impl FnMut(&Browser) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !ok(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn screenshot(&self, path: &Path) {
        let b64 = self.cmd("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = std::panic::catch_unwind(|| {
                http(
                    self.port,
                    "DELETE",
                    &format!("/session/{}", self.session),
                    None,
                )
            });
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn screenshots_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is <target>/tmp.
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("ui-screenshots");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Packets in `[after, before)` (epoch seconds) matching `filter`, over every file of `dir`,
/// as editcap and tcpdump count them.
fn oracle_count(dir: &Path, filter: &str, after: i64, before: i64, work: &Path) -> u64 {
    let mut total = 0;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for (i, f) in files.iter().enumerate() {
        let gated = work.join(format!("gated-{i}"));
        common::run_ok(
            Command::new("editcap")
                .args(["-A", &after.to_string(), "-B", &before.to_string()])
                .arg(f)
                .arg(&gated),
        );
        let o = Command::new("tcpdump")
            .args(["-r"])
            .arg(&gated)
            .arg(filter)
            .stderr(Stdio::null())
            .output()
            .unwrap();
        if o.status.success() {
            total += o
                .stdout
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .count() as u64;
        }
    }
    total
}

fn capinfos_count(path: &Path) -> u64 {
    let o = common::run_ok(
        Command::new("capinfos")
            .args(["-c", "-M", "-T", "-r"])
            .arg(path),
    );
    String::from_utf8_lossy(&o)
        .trim()
        .rsplit('\t')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn query_job_and_download_in_a_real_browser() {
    let pcaps = corpus();
    let gone = tempfile::TempDir::new().unwrap();
    std::fs::create_dir(gone.path().join("d")).unwrap();
    let s = tls_server(
        &[
            ("sensor-merge", pcaps.join("merge")),
            ("sensor-bulk", pcaps.join("bulk")),
            ("sensor-protocols", pcaps.join("protocols")),
            ("sensor-gone", gone.path().join("d")),
        ],
        "",
    );
    let shots = screenshots_dir();
    let downloads = s.dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let b = Browser::start(&downloads, &s.dir.path().join("chromium-profile"));
    // A sensor whose directory went away: down, and the Sensors page says why.
    std::fs::remove_dir(gone.path().join("d")).unwrap();

    // The browser logs in the way a user's browser does: HTTP Basic, credentials in the URL
    // for the first navigation, then from its own cache for every request of the origin.
    let (user, pw) = front::user("alice")
        .split_once(':')
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .unwrap();
    let root = s.url("");
    let with_creds = root.replacen("https://", &format!("https://{user}:{pw}@"), 1);
    b.goto(&with_creds);
    b.wait_for("the query form", |b| b.text("h1") == "Query");
    b.goto(&root);
    b.wait_for("the query form", |b| b.text("h1") == "Query");

    // A bad field: the API's clause puts the error next to the port field.
    b.typ("#f-port", "70000");
    b.click("#submit");
    b.wait_for("the port error", |b| !b.text("#err-port").is_empty());
    let err = b.text("#err-port");
    assert!(err.contains("70000"), "port error {err:?}");
    assert!(b.text("#err-form").is_empty());
    b.screenshot(&shots.join("query-error.png"));

    // The real query: absolute time, a host, a port, one sensor.
    b.click("#mode-absolute");
    b.set_value("#f-after", "2021-01-05T06:55:00");
    b.set_value("#f-before", "2021-01-05T07:00:00");
    b.typ("#f-host", "2620:1ec:c11::200");
    b.typ("#f-port", "443");
    b.click("input[name=sensor][value=sensor-merge]");
    // The estimate under the form follows the fields (the indexes of the merge directory,
    // built in the background, or its files counted whole).
    b.wait_for("the estimate", |b| {
        let t = b.text("#estimate");
        t.contains("packets") && t.contains("indexed files") && !t.contains("about 0 packets")
    });
    b.screenshot(&shots.join("query.png"));
    b.click("#submit");
    b.wait_for("the job page", |b| b.url().contains("/ui/job/"));
    b.wait_for("Completed", |b| b.text("#state") == "Completed");
    // The progress bar is for running jobs only.
    assert_eq!(b.property("#progress", "hidden"), true);
    assert!(b.text("#upstreams").contains("sensor-merge"));
    assert!(b.text("#events").contains("Completed"));
    let curl_line = b.text("#curl");
    assert!(curl_line.contains(&s.url("q/")), "{curl_line}");
    b.screenshot(&shots.join("job.png"));
    let job_url = b.url();
    let id = job_url.rsplit('/').next().unwrap().to_owned();

    // "Get PCAP": the browser downloads it.
    let href = b.property("#get-pcap", "href").as_str().unwrap().to_owned();
    assert!(
        href.ends_with(&format!("/app/docket/{id}/merged.pcap")),
        "{href}"
    );
    b.click("#get-pcap");
    let downloaded = downloads.join(format!("{id}.pcap"));
    b.wait_for("the download", |_| {
        downloaded.exists()
            && std::fs::read_dir(&downloads)
                .unwrap()
                .all(|e| !e.unwrap().path().to_string_lossy().ends_with(".crdownload"))
    });
    let got = std::fs::read(&downloaded).unwrap();

    // The API's capture of the same query, by curl with the same user.
    let (code, api) = s.get(
        "q/host/2620:1ec:c11::200/port/443/after/2021-01-05T06:55:00Z/before/2021-01-05T07:00:00Z/sensor/sensor-merge/pcap",
        &["-u", &front::user("alice")],
    );
    assert_eq!(code, 200);
    assert!(
        got == api,
        "the browser's download differs from the API's capture"
    );
    // And the packet count the tools find in the inputs.
    let want = oracle_count(
        &pcaps.join("merge"),
        "host 2620:1ec:c11::200 and port 443",
        1_609_829_700,
        1_609_830_000,
        s.dir.path(),
    );
    assert!(want > 0);
    assert_eq!(capinfos_count(&downloaded), want);

    // A pcapng answer downloads under its own extension.
    let (code, ng) = s.get(
        "q/after/2021-01-05T06:55:00Z/before/2021-01-05T07:00:00Z/sensor/sensor-merge/format/pcapng",
        &["-u", &front::user("alice")],
    );
    assert_eq!(code, 200);
    let ng_id = serde_json::from_slice::<Value>(&ng).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    b.goto(&s.url(&format!("ui/job/{ng_id}")));
    b.wait_for("the pcapng job", |b| b.text("#state") == "Completed");
    b.click("#get-pcap");
    let ng_file = downloads.join(format!("{ng_id}.pcapng"));
    b.wait_for("the pcapng download", |_| ng_file.exists());
    // An empty answer, a query of 300 ports, and a job some of whose sensors failed.
    let ask = |path: &str| {
        let (code, body) = s.get(path, &["-u", &front::user("alice")]);
        assert_eq!(code, 200, "{path}: {}", String::from_utf8_lossy(&body));
    };
    ask("q/host/192.0.2.99/after/2021-01-05T06:55:00Z/before/2021-01-05T07:00:00Z/sensor/sensor-merge");
    ask("q/after/2021-01-05T06:55:00Z/before/2021-01-05T07:00:00Z/sensor/sensor-gone/sensor/sensor-merge");
    let ports: String = (1..=300).map(|p| format!("/port/{p}")).collect();
    ask(&format!(
        "q/host/2620:1ec:c11::200{ports}/after/2021-01-05T06:55:00Z/before/2021-01-05T07:00:00Z/sensor/sensor-merge"
    ));

    // The jobs table shows the job, its user and its state, refreshed by the script; times to
    // the millisecond; Partial and empty answers stand out; a long query stays a few lines.
    b.goto(&s.url("ui/jobs"));
    b.wait_for("the job in the table", |b| {
        let t = b.text("#jobs");
        t.contains(&id[..8]) && t.contains("Completed") && t.contains("alice")
    });
    b.wait_for("the partial and the empty job", |b| {
        let t = b.text("#jobs");
        t.contains("Partial") && t.contains("(no packets)")
    });
    let first_time = b.text("#jobs tbody tr td");
    assert!(
        first_time.len() == 24 && first_time.ends_with('Z') && &first_time[19..20] == ".",
        "milliseconds: {first_time:?}"
    );
    assert_eq!(
        b.property("#jobs tbody tr.state-Partial td.state", "className"),
        "state"
    );
    assert!(b
        .text("#jobs tbody tr.empty td.state")
        .contains("no packets"));
    // The newest job is the 300-port one: its row is a few lines high, not thousands of px.
    let long = b.property("#jobs tbody tr td.q code", "title");
    assert!(long.as_str().unwrap().contains("port 300"), "{long}");
    let h = b
        .property("#jobs tbody tr", "offsetHeight")
        .as_f64()
        .unwrap();
    assert!(h < 150.0, "the 300-port row is {h} px high");
    b.screenshot(&shots.join("jobs.png"));
    // A Kibana "Query PCAP" link (after only, trailing slash) lands the browser on the job's
    // page, not on raw JSON.
    b.goto(&s.url("api/uri/host/2620:1ec:c11::200/port/443/after/2021-01-05T06:55:00Z/"));
    b.wait_for("the job page after a Kibana link", |b| {
        b.url().contains("/ui/job/")
    });
    b.wait_for("its state", |b| !b.text("#state").is_empty());

    b.goto(&s.url("ui/sensors"));
    b.wait_for("the sensors", |b| {
        b.text("#sensors").contains("sensor-bulk")
    });
    let down = b.text("#sensors tr.down");
    assert!(
        down.contains("sensor-gone") && down.contains("down"),
        "{down}"
    );
    assert!(!b.text("#sensors tr.down td.why").is_empty(), "{down}");
    b.screenshot(&shots.join("sensors.png"));
}
