//! Bad days for a local capture directory and the spool, reproduced with real processes: a
//! capture file truncated in place while a query reads it (as `tcpdump -C … -W …` ring buffers
//! and `copytruncate` rotation do), a FIFO among the captures, files that cannot be read at
//! all, a sparse zero-filled file, a hung mount (a real FUSE file system whose open never
//! returns, `tests/hung-fs.py`), a spool on a small tmpfs that fills while slow clients
//! read, and a spool on ext4 frozen by `fsfreeze` while jobs start and kept captures are asked
//! for. The real `docket serve`, curl over loopback, tshark as the reader of what arrived.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::server::{assert_prefix, big_dir, wait_for_bytes, Server, BIG_PATH};
use tempfile::TempDir;

fn events(st: &serde_json::Value) -> String {
    st["events"].to_string()
}

/// A query streaming the big capture to a slow client (2 MB/s) with no spool, so the file is
/// still being read when a test changes it under the reader; the stream is live when this
/// returns.
struct SlowRead {
    /// The capture being read.
    file: std::path::PathBuf,
    /// A copy of it as it was.
    original: std::path::PathBuf,
    /// Where the client writes what arrives.
    out: std::path::PathBuf,
    server: Server,
    curl: std::process::Child,
}

fn slow_read(work: &std::path::Path, before_start: impl FnOnce(&std::path::Path)) -> SlowRead {
    let big = big_dir(work);
    let file = big.join("big.pcap");
    let original = work.join("original.pcap");
    std::fs::copy(&file, &original).unwrap();
    before_start(&original);
    // Without a spool a slow client paces the job, so the file is being read when it changes.
    let server = Server::start(&[("ring", big.clone())], "spool = false");
    let out = work.join("got.pcap");
    let curl = server.stream_at(BIG_PATH, &out, "2M");
    wait_for_bytes(&out, 1 << 20);
    SlowRead {
        file,
        original,
        out,
        server,
        curl,
    }
}

#[test]
fn a_file_truncated_while_a_query_reads_it_ends_the_file_and_the_gateway_serves_on() {
    let work = TempDir::new().unwrap();
    let mut r = slow_read(work.path(), |_| {});
    // What a ring buffer does to its oldest file: reopen it with O_TRUNC and start writing.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&r.file)
        .unwrap();
    drop(f);
    let status = r.curl.wait().unwrap();
    assert!(status.success(), "the stream ends cleanly: {status:?}");
    // The gateway is alive and still answers.
    assert_eq!(r.server.get("healthz", &[]).0, 200);
    let id = r.server.json("ids")[0].as_str().unwrap().to_owned();
    let st = r.server.wait_final(&id);
    assert!(
        events(&st).contains("shrank"),
        "the job names the file: {st:#}"
    );
    assert!(events(&st).contains("big.pcap"), "{st:#}");
    // What arrived is a readable prefix of the file as it was.
    assert_prefix(&r.out, &r.original, "the file before the truncation");
    // Refilled (as the ring writes it again), the directory answers anew.
    std::fs::copy(&r.original, &r.file).unwrap();
    let again = work.path().join("again.pcap");
    let again = {
        let (code, body) = r.server.get(
            "q/after/2023-06-01T12:00:00Z/before/2023-06-01T12:01:00Z/pcap",
            &[],
        );
        assert_eq!(code, 200);
        std::fs::write(&again, body).unwrap();
        again
    };
    assert!(!common::tshark_packets(&again).is_empty());
}

#[test]
fn a_file_deleted_while_a_query_reads_it_is_read_whole_with_a_note() {
    let work = TempDir::new().unwrap();
    let mut r = slow_read(work.path(), |_| {});
    // Retention deletes the file being read.
    std::fs::remove_file(&r.file).unwrap();
    let status = r.curl.wait().unwrap();
    assert!(status.success(), "the stream ends cleanly: {status:?}");
    let id = r.server.json("ids")[0].as_str().unwrap().to_owned();
    let st = r.server.wait_final(&id);
    assert!(events(&st).contains("deleted"), "the job notes it: {st:#}");
    // The open file held all of it: every packet arrived.
    assert_eq!(
        common::tshark_packets(&r.out),
        common::tshark_packets(&r.original)
    );
}

#[test]
fn a_file_rewritten_in_place_while_read_never_splices_two_captures() {
    let work = TempDir::new().unwrap();
    // Another capture of the same layout and window: every record header differs (times one
    // second later), so any byte of it in the answer would show.
    let other = work.path().join("other.pcap");
    let mut r = slow_read(work.path(), |original| {
        common::run_ok(
            Command::new("editcap")
                .args(["-F", "pcap", "-t", "1"])
                .arg(original)
                .arg(&other),
        );
    });
    // A ring buffer reopening its oldest file: O_TRUNC, then a new capture written past the
    // reader's offset at once.
    std::fs::copy(&other, &r.file).unwrap();
    assert!(r.curl.wait().unwrap().success());
    assert_prefix(
        &r.out,
        &r.original,
        "only packets of the capture that was opened",
    );
    let id = r.server.json("ids")[0].as_str().unwrap().to_owned();
    let st = r.server.wait_final(&id);
    assert!(st["events"].to_string().contains("rewritten"), "{st:#}");
}

#[test]
fn a_fifo_and_unreadable_files_are_named_in_the_job_and_in_stats() {
    let work = TempDir::new().unwrap();
    let dir = work.path().join("caps");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(
        common::corpus().join("bulk/mix-19-real-captures-10min.pcap"),
        dir.join("good.pcap"),
    )
    .unwrap();
    // A FIFO with no writer: opening it for reading would block forever.
    let fifo = dir.join("stuck.fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a plain mkfifo on a path in the test's own directory.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    std::fs::write(dir.join("empty.pcap"), b"").unwrap();
    std::fs::write(
        dir.join("text.pcap"),
        b"this is not a capture file at all\n",
    )
    .unwrap();
    std::fs::write(dir.join("short.pcap"), [0xd4, 0xc3, 0xb2, 0xa1, 2, 0]).unwrap();
    std::os::unix::fs::symlink(dir.join("nowhere.pcap"), dir.join("dangling.pcap")).unwrap();
    let server = Server::start(&[("caps", dir.clone())], "");
    let path = "q/after/2023-06-01T12:00:00Z/before/2023-06-01T12:01:00Z";
    let id = server.job_id(path);
    let st = server.wait_final(&id);
    assert_eq!(st["state"], "Completed", "{st:#}");
    let ev = events(&st);
    for (name, why) in [
        ("stuck.fifo", "not a regular file"),
        ("empty.pcap", "unreadable"),
        ("text.pcap", "not a pcap"),
        ("short.pcap", "truncated"),
        ("dangling.pcap", "No such file"),
    ] {
        assert!(ev.contains(name), "the job names {name}: {ev}");
        assert!(ev.contains(why), "the job says {why}: {ev}");
    }
    assert!(!ev.contains("good.pcap"), "{ev}");
    // The good file answered as usual.
    let (code, body) = server.get(&format!("{path}/pcap"), &[]);
    assert_eq!(code, 200);
    assert!(body.len() > 24);
    // /stats names them too, with reasons.
    let stats = server.json("stats");
    let files = &stats["caps"]["files"];
    assert_eq!(files["readable"], 1, "{stats:#}");
    let bad = files["unreadable"].as_array().unwrap();
    assert_eq!(bad.len(), 5, "{stats:#}");
    assert!(files.to_string().contains("stuck.fifo"), "{stats:#}");
    // Nothing was left blocked: the next job runs at once.
    let id2 = server.job_id("q/after/2023-06-01T12:01:00Z/before/2023-06-01T12:02:00Z");
    assert_eq!(server.wait_final(&id2)["state"], "Completed");
}

/// A tmpfs of `mib` MiB mounted at `at` (the test runs as root), unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &Path, mib: u32) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        common::run_ok(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
                .arg(at),
        );
        Tmpfs(at.to_owned())
    }

    /// Free bytes on it.
    fn free(&self) -> u64 {
        let c = std::ffi::CString::new(self.0.to_str().unwrap()).unwrap();
        // SAFETY: statvfs into a zeroed struct we own, on a NUL-terminated path.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
        st.f_bavail as u64 * st.f_frsize as u64
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_spool_empties_as_slow_readers_read_and_admits_new_jobs_meanwhile() {
    let work = TempDir::new().unwrap();
    let big = big_dir(work.path());
    let dir = TempDir::new().unwrap();
    // 24 MiB of spool for a 48 MB answer: the disk fills mid-job.
    let fs = Tmpfs::mount(&dir.path().join("spool"), 24);
    let conf = format!(
        "free_bytes = 1048576\n[[local]]\nname = \"big\"\npath = \"{}\"\n",
        big.display()
    );
    let server = Server::launch(dir, &conf, None);
    let out = work.path().join("slow.pcap");
    let mut curl = server.stream_at(BIG_PATH, &out, "3M");
    // The job fills the disk and goes on streaming to the client.
    let deadline = Instant::now() + Duration::from_secs(60);
    let id = loop {
        if let Some(id) = server.json("ids")[0].as_str() {
            break id.to_owned();
        }
        assert!(Instant::now() < deadline, "the job never started");
        std::thread::sleep(Duration::from_millis(20));
    };
    // The least free space seen: under load the failure may be noticed here after the client
    // has already read (and given back) part of the file.
    let mut full = fs.free();
    loop {
        full = full.min(fs.free());
        let st = server.json(&format!("status/{id}"))[&id].clone();
        if events(&st).contains("spool failed mid-job") {
            break;
        }
        assert!(Instant::now() < deadline, "the spool never filled: {st:#}");
        std::thread::sleep(Duration::from_millis(50));
    }
    full = full.min(fs.free());
    // Meanwhile a new job is admitted: the space is held only by the abandoned file.
    let (code, body) = server.get(
        "q/after/2023-06-01T12:00:00Z/before/2023-06-01T12:00:10Z",
        &[],
    );
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    // As the client reads on, the file system gets the space back.
    let deadline = Instant::now() + Duration::from_secs(60);
    while fs.free() < full + (8 << 20) {
        assert!(
            curl.try_wait().unwrap().is_none() || fs.free() >= full + (8 << 20),
            "the client finished before space came back: {} free",
            fs.free()
        );
        assert!(
            Instant::now() < deadline,
            "no space came back: {} free",
            fs.free()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // And the client gets the whole answer, intact.
    assert!(curl.wait().unwrap().success());
    let got = common::tshark_packets(&out);
    let all = common::tshark_packets(&big.join("big.pcap"));
    assert!(got == all, "{} of {} packets", got.len(), all.len());
    drop(server);
}

#[test]
fn a_zero_filled_sparse_file_is_damage_and_the_floor_holds_while_writing() {
    let work = TempDir::new().unwrap();
    let caps = work.path().join("caps");
    std::fs::create_dir(&caps).unwrap();
    // A valid pcap header, then 2 GB of nothing (4 KB on disk).
    let sparse = caps.join("prealloc.pcap");
    let head = &std::fs::read(common::corpus().join("bulk/mix-19-real-captures-10min.pcap"))
        .unwrap()[..24];
    std::fs::write(&sparse, head).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&sparse)
        .unwrap()
        .set_len(2_000_000_000)
        .unwrap();
    let big = big_dir(work.path());
    let dir = TempDir::new().unwrap();
    let fs = Tmpfs::mount(&dir.path().join("spool"), 48);
    let conf = format!(
        "free_bytes = 20971520\ntime_window = 1\n[[local]]\nname = \"caps\"\npath = \"{}\"\n\
         [[local]]\nname = \"big\"\npath = \"{}\"\n",
        caps.display(),
        big.display()
    );
    let server = Server::launch(dir, &conf, None);
    // The sparse file is named as damage, and yields nothing.
    let id = server.job_id("q/sensor/caps/after/1970-01-01T00:00:00Z/before/2030-01-01T00:00:00Z");
    let st = server.wait_final(&id);
    assert!(events(&st).contains("zero-filled"), "{st:#}");
    // At most the run that identifies it (empty packets at the epoch), not 2 GB.
    assert!(st["bytes"].as_u64().unwrap() < 64 << 10, "{st:#}");
    // A 48 MB answer on a 48 MiB spool that must keep 20 MiB free: the job stops writing at
    // the floor, not at a full disk, and still delivers everything.
    let got = server.fetch(
        &format!("q/sensor/big/{}", BIG_PATH.trim_start_matches("q/")),
        work.path(),
    );
    let id = server
        .json("ids")
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .find(|i| *i != id)
        .unwrap();
    let st = server.wait_final(&id);
    assert!(events(&st).contains("below free_bytes"), "{st:#}");
    assert!(fs.free() >= 20 << 20, "the floor held: {} free", fs.free());
    assert!(common::tshark_packets(&got) == common::tshark_packets(&big.join("big.pcap")));
    drop(server);
}

/// The hung mount of `tests/hung-fs.py` (a real FUSE file system), unmounted and stopped (by
/// PID) when dropped.
struct HungMount {
    child: std::process::Child,
    at: std::path::PathBuf,
}

impl HungMount {
    fn start(at: &Path) -> HungMount {
        use std::io::BufRead;
        std::fs::create_dir_all(at).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hung-fs.py");
        let mut child = Command::new("/usr/bin/python3")
            .arg(script)
            .arg(at)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "MOUNTED");
        HungMount {
            child,
            at: at.to_owned(),
        }
    }
}

impl Drop for HungMount {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("fusermount")
            .arg("-u")
            .arg("-z")
            .arg(&self.at)
            .status();
    }
}

#[test]
fn a_hung_mount_fails_its_sensor_alone_and_frees_the_slot() {
    if !Path::new("/dev/fuse").exists() {
        eprintln!("SKIPPED: no /dev/fuse on this machine, so no hung mount can be made");
        return;
    }
    let work = TempDir::new().unwrap();
    let at = work.path().join("hung");
    std::fs::create_dir(&at).unwrap();
    let locals = [
        ("good", common::corpus().join("bulk")),
        ("hung", at.clone()),
    ];
    // One job slot: a stuck job that kept it would block every other.
    let server = Server::start(&locals, "max_jobs = 1");
    // Mounted after the server (dropped before it): a process with a thread blocked on the
    // mount cannot be reaped until the mount is gone.
    let hung = HungMount::start(&at);
    let window = "after/2023-06-01T12:00:00Z/before/2023-06-01T12:01:00Z";
    let id = server.job_id(&format!("q/{window}"));
    let st = server.wait_final(&id);
    let ev = events(&st);
    assert!(ev.contains("stuck") && ev.contains("hung"), "{st:#}");
    assert!(
        st["packets"].as_u64().unwrap() > 0,
        "the good sensor answered: {st:#}"
    );
    // The slot is free: a job on the good sensor runs to its end.
    let id2 = server.job_id(&format!("q/sensor/good/{window}"));
    assert_eq!(server.wait_final(&id2)["state"], "Completed");
    drop(hung);
    drop(server);
}

/// A small ext4 file system (a loop-mounted image; the test runs as root) at `at`, thawed and
/// unmounted when dropped.
struct Ext4(std::path::PathBuf);

impl Ext4 {
    fn mount(image: &Path, at: &Path, mib: u32) -> Ext4 {
        std::fs::create_dir_all(at).unwrap();
        let f = std::fs::File::create(image).unwrap();
        f.set_len(u64::from(mib) << 20).unwrap();
        common::run_ok(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(image));
        common::run_ok(
            Command::new("mount")
                .args(["-o", "loop"])
                .arg(image)
                .arg(at),
        );
        Ext4(at.to_owned())
    }

    /// Freezes it (`fsfreeze`: every write waits until it is thawed, as under a snapshot or
    /// a hung storage array); thawed when the guard drops.
    fn freeze(&self) -> Frozen {
        common::run_ok(Command::new("fsfreeze").arg("-f").arg(&self.0));
        Frozen(self.0.clone())
    }
}

impl Drop for Ext4 {
    fn drop(&mut self) {
        let _ = Command::new("fsfreeze").arg("-u").arg(&self.0).output();
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

struct Frozen(std::path::PathBuf);

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = Command::new("fsfreeze").arg("-u").arg(&self.0).output();
    }
}

#[test]
fn a_frozen_spool_holds_no_worker_new_jobs_stream_and_kept_captures_are_still_served() {
    let work = TempDir::new().unwrap();
    let dir = TempDir::new().unwrap();
    let spool = dir.path().join("spool");
    let fs = Ext4::mount(&work.path().join("spool.ext4"), &spool, 64);
    let bulk = common::corpus().join("bulk");
    // Two job slots: two jobs stuck on the spool would have held both async workers too.
    std::fs::write(dir.path().join(common::server::LOG), "").unwrap();
    // No cleanup for space: the whole 64 MiB file system is under its default target.
    let extra = "max_jobs = 2\nexpire_space = 0";
    let server = Server::start_in(dir, &[("bulk", bulk.clone())], extra);
    let window = |m: u32| {
        (
            format!("2023-06-01T12:0{m}:00Z"),
            format!("2023-06-01T12:0{}:00Z", m + 1),
        )
    };
    let path = |m: u32| {
        let (a, b) = window(m);
        format!("q/host/10.0.2.15/after/{a}/before/{b}")
    };
    let oracle = |m: u32| {
        let (a, b) = window(m);
        common::server::oracle(
            std::slice::from_ref(&bulk),
            // IP only: tcpdump's `host` also takes ARP, which the clause does not.
            "ip host 10.0.2.15",
            common::server::epoch(&a),
            common::server::epoch(&b),
            work.path(),
        )
        .unwrap()
    };
    // Kept before the freeze.
    let kept = server.fetch(&format!("{}/pcap", path(4)), work.path());
    common::server::assert_same_packets(&kept, &oracle(4), "kept before the freeze");
    let kept_id = server.job_id(&path(4));
    let frozen = fs.freeze();
    // Two new jobs at once, while the spool cannot create a file.
    let mut new_jobs: Vec<_> = (1..=2)
        .map(|m| {
            let out = work.path().join(format!("frozen-{m}.pcap"));
            let child = server
                .curl()
                .args(["-o"])
                .arg(&out)
                .args(["-w", "%{http_code}"])
                .arg(server.url(&format!("{}/pcap", path(m))))
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            (m, out, child)
        })
        .collect();
    // Meanwhile the gateway answers (curl's own bound: a hang fails the test, not a timer).
    let (code, _) = server.get("healthz", &["--max-time", "30"]);
    assert_eq!(code, 200, "healthz while jobs wait on a frozen spool");
    for (m, out, child) in new_jobs.drain(..) {
        let o = child.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&o.stdout), "200", "job {m}");
        common::server::assert_same_packets(&out, &oracle(m), "a job on a frozen spool");
        let st = server.wait_final(&server.job_id(&path(m)));
        assert_eq!(st["state"], "Completed", "{st:#}");
        assert!(events(&st).contains("frozen or hung"), "{st:#}");
    }
    // A kept capture is still served from the frozen file system, whole.
    let again = server.fetch(&format!("{}/pcap", path(4)), work.path());
    assert_eq!(
        std::fs::read(&again).unwrap(),
        std::fs::read(&kept).unwrap()
    );
    // Deleting needs the file system: refused, to be tried again.
    let delete = |server: &Server, id: &str| {
        let o = server
            .curl()
            .args(["-X", "DELETE", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(server.url(id))
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert_eq!(delete(&server, &kept_id), "503");
    // A stop while frozen: Docket's own shutdown ends in bounded time, giving up the job
    // store's flush (said in the log). The kernel still holds the threads blocked in the file
    // system until the thaw, so the process is reaped only after it.
    server.signal(libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(90);
    while !server.log().contains("shutdown: done") {
        assert!(
            Instant::now() < deadline,
            "no bounded shutdown: {}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        server.log().contains("did not flush in time"),
        "{}",
        server.log()
    );
    // Thawed and started again, the spool is used again: the next job is kept, and nothing
    // half-written is left behind by the jobs that went without a file.
    drop(frozen);
    let server = Server::start_in(server.kill(), &[("bulk", bulk.clone())], extra);
    let p3 = format!("{}/pcap", path(3));
    let got = server.fetch(&p3, work.path());
    common::server::assert_same_packets(&got, &oracle(3), "after the thaw");
    let st = server.wait_final(&server.job_id(&path(3)));
    assert_eq!(st["mode"], "spooled", "{st:#}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let parts: Vec<_> = common::server::spool_files(&spool)
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "part"))
            .collect();
        if parts.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "part files left: {parts:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A DELETE that waits on a frozen spool (the first file operation to stall: it runs, and
    // is given up after the wait) is refused; its unlink runs at the thaw, and the job goes
    // with its file then: never listed with a capture that is gone.
    let id3 = server.job_id(&path(3));
    let frozen = fs.freeze();
    assert_eq!(delete(&server, &id3), "503");
    drop(frozen);
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.get(&format!("{id3}/merged.pcap"), &[]).0 != 404 {
        assert!(
            Instant::now() < deadline,
            "the job outlives its deleted file: {:#}",
            server.json("jobs")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!server.json("jobs").to_string().contains(&id3));
    assert!(
        !common::server::spool_files(&spool)
            .iter()
            .any(|p| p.to_string_lossy().contains(&id3)),
        "the file is gone"
    );
    assert_eq!(delete(&server, &kept_id), "200");
    drop(server);
}
