//! A real `docket serve` process for end-to-end tests, and the tcpdump → editcap → mergecap
//! oracle its results are compared with (through tshark).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::{first_line, run_ok, tshark_packets};

/// The server's log file in its directory: create it (empty) before the start to have the
/// server log at info level into it.
pub const LOG: &str = "server.log";

/// A running `docket serve`, killed (by PID) when dropped.
pub struct Server {
    /// The process.
    pub child: Child,
    /// `http://ADDR/PREFIX`.
    pub base: String,
    /// The server's working directory (config, spool, certificates, downloads).
    pub dir: TempDir,
    /// The CA that signed the server's certificate, if TLS.
    pub ca: Option<PathBuf>,
}

impl Server {
    /// Starts a server over `locals` (name, directory) with extra config lines.
    pub fn start(locals: &[(&str, PathBuf)], extra: &str) -> Server {
        let dir = TempDir::new().unwrap();
        Server::start_in(dir, locals, extra)
    }

    pub fn start_in(dir: TempDir, locals: &[(&str, PathBuf)], extra: &str) -> Server {
        Server::start_with(dir, locals, extra, "")
    }

    /// Starts a server with top-level `extra` keys, local directories, then `tables` (more
    /// TOML tables, e.g. `[[stenographer]]`).
    pub fn start_with(
        dir: TempDir,
        locals: &[(&str, PathBuf)],
        extra: &str,
        tables: &str,
    ) -> Server {
        let mut conf = format!("{extra}\n");
        for (name, path) in locals {
            conf.push_str(&format!(
                "[[local]]\nname = \"{name}\"\npath = \"{}\"\nfollow_symlinks = true\n",
                path.display()
            ));
        }
        conf.push_str(tables);
        Server::launch(dir, &conf, None)
    }

    /// Starts Docket in `dir` with `conf` (TOML; `listen`, `spool_dir` and, unless `conf` sets
    /// it, `free_bytes = 0` are put first) and waits for its readiness line. `ca` is the CA of the server's
    /// certificate when `conf` turns TLS on (curl's `--cacert`).
    pub fn launch(dir: TempDir, conf: &str, ca: Option<PathBuf>) -> Server {
        let spool = dir.path().join("spool");
        // No free-space floor unless the test sets one.
        let floor = if conf.contains("free_bytes") {
            ""
        } else {
            "free_bytes = 0\n"
        };
        let conf = format!(
            "listen = \"127.0.0.1:0\"\nspool_dir = \"{}\"\n{floor}{conf}",
            spool.display()
        );
        let conf_path = dir.path().join("docket.toml");
        std::fs::write(&conf_path, conf).unwrap();
        // With `LOG` in the directory, the server logs at info level into it.
        let log = dir.path().join(LOG);
        let (level, stderr) = match std::fs::File::open(&log) {
            Ok(_) => (
                "info",
                Stdio::from(std::fs::OpenOptions::new().append(true).open(&log).unwrap()),
            ),
            Err(_) => ("warn", Stdio::inherit()),
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_docket"))
            .args(["serve", "-c"])
            .arg(&conf_path)
            .env("RUST_LOG", level)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        // Readiness is the server's own line, not a sleep.
        let line = first_line(&mut child);
        let base = line
            .strip_prefix("docket listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Server {
            child,
            base,
            dir,
            ca,
        }
    }

    /// What the server logged (see [`LOG`]).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(LOG)).unwrap_or_default()
    }

    /// Sends `signal` to the server process (by its PID).
    pub fn signal(&self, signal: i32) {
        // SAFETY: signals the process this harness started, by its PID.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Stops the server (SIGTERM), requires a clean exit, and gives back its directory for a
    /// restart on the same spool.
    pub fn stop(mut self) -> TempDir {
        self.signal(libc::SIGTERM);
        let status = self.child.wait().unwrap();
        assert!(status.success(), "graceful stop exits 0: {status:?}");
        std::mem::replace(&mut self.dir, TempDir::new().unwrap())
    }

    /// Kills the server (SIGKILL, by its PID; harmless if it already exited), reaps it, and
    /// gives back its directory for a restart on the same spool.
    pub fn kill(mut self) -> TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::replace(&mut self.dir, TempDir::new().unwrap())
    }

    pub fn url(&self, rest: &str) -> String {
        format!("{}{rest}", self.base)
    }

    /// A curl command trusting the server's CA; bounded, so that a hung server fails the
    /// test instead of hanging it.
    pub fn curl(&self) -> Command {
        let mut c = Command::new("curl");
        c.args(["-sS", "--max-time", "300"]);
        if let Some(ca) = &self.ca {
            c.arg("--cacert").arg(ca);
        }
        c
    }

    /// GET with curl into a file; returns (HTTP status, body). Status 0 means curl got no
    /// HTTP answer (e.g. the TLS handshake was refused).
    pub fn get(&self, rest: &str, extra: &[&str]) -> (u16, Vec<u8>) {
        let out = self.dir.path().join(format!("body-{}", rand_suffix()));
        let o = self
            .curl()
            .arg("-o")
            .arg(&out)
            .args(["-w", "%{http_code}"])
            .args(extra)
            .arg(self.url(rest))
            .output()
            .unwrap();
        let code = String::from_utf8_lossy(&o.stdout).parse().unwrap_or(0);
        let body = std::fs::read(&out).unwrap_or_default();
        let _ = std::fs::remove_file(&out);
        (code, body)
    }

    pub fn json(&self, rest: &str) -> serde_json::Value {
        let (code, body) = self.get(rest, &[]);
        assert_eq!(code, 200, "{rest}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    }

    /// Starts curl streaming `path` into `out`, read at `rate` (e.g. `"2M"`): a slow client.
    pub fn stream_at(&self, path: &str, out: &Path, rate: &str) -> Child {
        Command::new("curl")
            .args(["-sS", "-N", "--limit-rate", rate, "-o"])
            .arg(out)
            .arg(self.url(path))
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// GETs a capture (`…/pcap`), requires 200, and keeps it as a file in `dir` for the tools.
    pub fn fetch(&self, rest: &str, dir: &Path) -> PathBuf {
        let (code, body) = self.get(rest, &[]);
        assert_eq!(code, 200, "{rest}: {}", String::from_utf8_lossy(&body));
        let out = dir.join(format!("fetched-{}.pcap", rand_suffix()));
        std::fs::write(&out, &body).unwrap();
        out
    }

    /// The job id of a query path (`q/…` without `/pcap`).
    pub fn job_id(&self, path: &str) -> String {
        self.json(path)["id"]
            .as_str()
            .expect("job JSON has an id")
            .to_owned()
    }

    /// Waits (bounded) until the job's state is final; returns its status.
    pub fn wait_final(&self, id: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let s = self.json(&format!("status/{id}"));
            let st = s[id]["state"].as_str().unwrap_or("").to_owned();
            if !["Queued", "Running", ""].contains(&st.as_str()) {
                return s[id].clone();
            }
            assert!(Instant::now() < deadline, "job {id} did not finish: {s}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The oracle: per file (dirs in order, files by name), tcpdump with `filter`, editcap to
/// `[after, before)` (epoch seconds), then mergecap of everything.
pub fn oracle(
    dirs: &[PathBuf],
    filter: &str,
    after: i64,
    before: i64,
    work: &Path,
) -> Option<PathBuf> {
    let mut parts = Vec::new();
    for d in dirs {
        let mut files: Vec<PathBuf> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in files {
            let filtered = work.join(format!("f-{}", rand_suffix()));
            let mut cmd = Command::new("tcpdump");
            cmd.args(["--time-stamp-precision=nano", "-r"])
                .arg(&f)
                .arg("-w")
                .arg(&filtered);
            if !filter.is_empty() {
                cmd.arg(filter);
            }
            // A filter that cannot apply to a file's link type matches nothing (as in Docket).
            if !cmd.output().unwrap().status.success() {
                continue;
            }
            let gated = work.join(format!("g-{}", rand_suffix()));
            run_ok(
                Command::new("editcap")
                    .args(["-A", &after.to_string(), "-B", &before.to_string()])
                    .arg(&filtered)
                    .arg(&gated),
            );
            // editcap labels an empty result "unknown encapsulation", which mergecap refuses.
            let count = run_ok(
                Command::new("capinfos")
                    .args(["-c", "-M", "-T", "-r"])
                    .arg(&gated),
            );
            if String::from_utf8_lossy(&count).trim().ends_with("\t0") {
                continue;
            }
            parts.push(gated);
        }
    }
    let merged = work.join(format!("oracle-{}", rand_suffix()));
    if parts.is_empty() {
        return None;
    }
    // pcapng: the selected files may mix link types; the comparison is through tshark.
    run_ok(
        Command::new("mergecap")
            .args(["-F", "pcapng", "-w"])
            .arg(&merged)
            .args(&parts),
    );
    Some(merged)
}

pub fn epoch(rfc3339: &str) -> i64 {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .unwrap()
        .unix_timestamp()
}

pub fn assert_same_packets(ours: &Path, oracle: &Path, what: &str) {
    let (a, b) = (tshark_packets(ours), tshark_packets(oracle));
    assert_eq!(a.len(), b.len(), "{what}: packet count (docket vs oracle)");
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(x == y, "{what}: packet {} differs: {x:?} vs {y:?}", i + 1);
    }
}

/// The captures in a spool directory (complete and part files): everything but the job store.
pub fn spool_files(spool: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(spool)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    !p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("jobs.sqlite"))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The bulk trace (four time-shifted copies with `reps = 4`) cut every 30 s into classic pcap
/// files named `log.pcap.<epoch of the first packet>`, and the ground-truth trace as
/// `other.pcap` (no epoch in its name).
pub fn rotated_dir(work: &Path, reps: i64) -> PathBuf {
    let dir = work.join("d");
    std::fs::create_dir(&dir).unwrap();
    let bulk = super::corpus().join("bulk/mix-19-real-captures-10min.pcap");
    let cut = work.join("cut");
    std::fs::create_dir(&cut).unwrap();
    for r in 0..reps {
        let shifted = work.join(format!("rep{r}.pcap"));
        super::run_ok(
            Command::new("editcap")
                .args(["-F", "pcap", "-t", &(r * 700).to_string()])
                .arg(&bulk)
                .arg(&shifted),
        );
        super::run_ok(
            Command::new("editcap")
                .args(["-F", "pcap", "-i", "30"])
                .arg(&shifted)
                .arg(cut.join(format!("r{r}.pcap"))),
        );
    }
    for f in std::fs::read_dir(&cut).unwrap() {
        let f = f.unwrap().path();
        let out = super::run_ok(
            Command::new("capinfos")
                .args(["-S", "-a", "-T", "-r"])
                .arg(&f),
        );
        let line = String::from_utf8(out).unwrap();
        let secs: f64 = line.split('\t').nth(1).unwrap().trim().parse().unwrap();
        std::fs::rename(&f, dir.join(format!("log.pcap.{}", secs.floor() as i64))).unwrap();
    }
    std::fs::copy(
        super::corpus().join("merge/ground-truth__pcpp-tls2.pcap"),
        dir.join("other.pcap"),
    )
    .unwrap();
    dir
}

/// A directory holding one capture of four time-shifted copies of the bulk trace (about
/// 50 MB, 12:00 to 12:45), made by editcap and mergecap: a job over it streamed without a
/// spool is paced by a slow client, so it is surely running when the test acts.
pub fn big_dir(work: &Path) -> PathBuf {
    let bulk = super::corpus().join("bulk/mix-19-real-captures-10min.pcap");
    let mut reps = Vec::new();
    for r in 0..4 {
        let p = work.join(format!("rep{r}"));
        super::run_ok(
            Command::new("editcap")
                .args(["-t", &(r * 700).to_string()])
                .arg(&bulk)
                .arg(&p),
        );
        reps.push(p);
    }
    let big = work.join("big");
    std::fs::create_dir(&big).unwrap();
    super::run_ok(
        Command::new("mergecap")
            .args(["-a", "-w"])
            .arg(big.join("big.pcap"))
            .args(&reps),
    );
    big
}

/// The whole of [`big_dir`]'s capture as a query path.
pub const BIG_PATH: &str = "q/after/2023-06-01T12:00:00Z/before/2023-06-01T13:00:00Z/pcap";

/// Waits (bounded) until `out` holds at least `n` bytes: a stream is live.
pub fn wait_for_bytes(out: &Path, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(out).map_or(0, |m| m.len()) < n {
        assert!(
            Instant::now() < deadline,
            "the stream never reached {n} bytes"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `part` is a readable capture holding a strict, non-empty prefix of `whole`'s packets and
/// ending on a record boundary (tshark reads every packet; capinfos finds nothing cut short).
pub fn assert_prefix(part: &Path, whole: &Path, what: &str) {
    let got = tshark_packets(part);
    let all = tshark_packets(whole);
    assert!(
        !got.is_empty() && got.len() < all.len(),
        "{what}: {} of {} packets",
        got.len(),
        all.len()
    );
    assert_eq!(got[..], all[..got.len()], "{what}: a prefix");
    let info = Command::new("capinfos").arg(part).output().unwrap();
    assert!(
        info.status.success() && !String::from_utf8_lossy(&info.stderr).contains("cut short"),
        "{what}: {}",
        String::from_utf8_lossy(&info.stderr)
    );
}
