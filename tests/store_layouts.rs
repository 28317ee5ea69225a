//! Capture stores as the field writes them, read by the real `docket serve`: Suricata's
//! pcap-log in multi mode (LZ4-frame files by the real `lz4` tool, `<dir>/<thread>/
//! log.pcap.<epoch>`), tcpdump `-G`-style names with a configured pattern and `gzip`, a name that
//! lies about its time, subdirectories below `max_depth`, symbolic links leading out, and a
//! directory missing at start. Oracle: tcpdump → editcap → mergecap over the uncompressed
//! files.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::server::{assert_same_packets, epoch, oracle, rotated_dir, Server};
use common::{corpus, run_ok};
use tempfile::TempDir;

const AFTER: &str = "2021-01-05T06:56:00Z";
const BEFORE: &str = "2021-01-05T06:57:00Z";
const FILTER: &str = "host 2620:1ec:c11::200";

/// The ground-truth trace cut every 5 s by `editcap -i` into `dir`; returns each file with the
/// epoch second of its first packet (capinfos), in time order.
fn rotations(dir: &Path) -> Vec<(PathBuf, i64)> {
    std::fs::create_dir_all(dir).unwrap();
    run_ok(
        Command::new("editcap")
            .args(["-i", "5"])
            .arg(corpus().join("merge/ground-truth__pcpp-tls2.pcap"))
            .arg(dir.join("gt.pcap")),
    );
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let out = run_ok(
                Command::new("capinfos")
                    .args(["-S", "-a", "-T", "-r"])
                    .arg(&f),
            );
            let line = String::from_utf8(out).unwrap();
            let secs = line.split('\t').nth(1).unwrap().trim();
            let secs: f64 = secs.parse().unwrap();
            (f, secs.floor() as i64)
        })
        .collect()
}

/// `tool -c FILE > to`.
fn compress(tool: &str, file: &Path, to: &Path) {
    let bytes = run_ok(Command::new(tool).arg("-c").arg(file));
    std::fs::write(to, bytes).unwrap();
}

fn check(server: &Server, sensor: &str, plain: &Path, work: &Path, what: &str) {
    let path =
        format!("q/sensor/{sensor}/host/2620:1ec:c11::200/after/{AFTER}/before/{BEFORE}/pcap");
    let ours = server.fetch(&path, work);
    let expected = oracle(
        &[plain.to_owned()],
        FILTER,
        epoch(AFTER),
        epoch(BEFORE),
        work,
    )
    .expect("the window holds packets of that host");
    assert_same_packets(&ours, &expected, what);
}

#[test]
fn rotation_stores_answer_as_their_uncompressed_files() {
    let work = TempDir::new().unwrap();
    let plain = work.path().join("plain");
    let files = rotations(&plain);
    assert!(files.len() > 20, "{}", files.len());

    // Suricata's multi mode, LZ4 frames: log.pcap.<thread>.<epoch> in one directory; and
    // the same with a directory per thread and log.pcap.<epoch>.
    let suricata = work.path().join("suricata");
    let threads = work.path().join("threads");
    std::fs::create_dir_all(&suricata).unwrap();
    for (k, (f, secs)) in files.iter().enumerate() {
        compress(
            "lz4",
            f,
            &suricata.join(format!("log.pcap.{}.{secs}", k % 2 + 1)),
        );
        let thread = threads.join(format!("W#0{}-eth0", k % 2 + 1));
        std::fs::create_dir_all(&thread).unwrap();
        compress("lz4", f, &thread.join(format!("log.pcap.{secs}")));
    }
    // tcpdump -G -w 'trace-%s.pcap' -z gzip: a configured pattern, a compression suffix.
    let tcpdump = work.path().join("tcpdump");
    std::fs::create_dir_all(&tcpdump).unwrap();
    for (f, secs) in &files {
        compress("gzip", f, &tcpdump.join(format!("trace-{secs}.pcap.gz")));
    }
    // Names that lie: each file named with its neighbour's epoch, one an hour off.
    let liars = work.path().join("liars");
    std::fs::create_dir_all(&liars).unwrap();
    for (k, (f, _)) in files.iter().enumerate() {
        let (_, secs) = files[(k + 1) % files.len()];
        let secs = if k == 7 { secs + 3600 } else { secs };
        std::fs::copy(f, liars.join(format!("so-pcap.{secs}.{k}"))).unwrap();
    }
    let conf = format!(
        "time_window = 1\n\
         [[local]]\nname = \"suricata\"\npath = \"{}\"\n\
         [[local]]\nname = \"threads\"\npath = \"{}\"\n\
         [[local]]\nname = \"tcpdump\"\npath = \"{}\"\nepoch_names = [\"trace-{{epoch}}.pcap\"]\n\
         [[local]]\nname = \"liars\"\npath = \"{}\"\n",
        suricata.display(),
        threads.display(),
        tcpdump.display(),
        liars.display()
    );
    let server = Server::launch(TempDir::new().unwrap(), &conf, None);
    for sensor in ["suricata", "threads", "tcpdump", "liars"] {
        check(&server, sensor, &plain, work.path(), sensor);
    }
    // A second query over the same window, after the first read the rotation files whole.
    check(&server, "suricata", &plain, work.path(), "suricata, again");
}

#[test]
fn depth_links_and_a_missing_directory() {
    let work = TempDir::new().unwrap();
    let plain = work.path().join("plain");
    let files = rotations(&plain);
    let root = work.path().join("root");
    // Every file three levels down (read: max_depth 3), and a copy of each four levels down
    // (not read: it would double every packet).
    let deep = root.join("a/b/c");
    let deeper = root.join("a/b/c/d");
    std::fs::create_dir_all(&deeper).unwrap();
    for (f, _) in &files {
        std::fs::copy(f, deep.join(f.file_name().unwrap())).unwrap();
        std::fs::copy(f, deeper.join(f.file_name().unwrap())).unwrap();
    }
    // A link leading outside the directory: not followed, and named.
    std::os::unix::fs::symlink(&files[0].0, root.join("outside.pcap")).unwrap();
    // Second names for what is already there (a link to the directory itself, a "current"
    // link to a file): each file is read once, or its packets would come out twice.
    std::os::unix::fs::symlink(".", root.join("self")).unwrap();
    std::os::unix::fs::symlink(
        deep.join(files[5].0.file_name().unwrap()),
        root.join("current.pcap"),
    )
    .unwrap();
    let absent = work.path().join("not-mounted");
    let conf = format!(
        "time_window = 1\n\
         [[local]]\nname = \"root\"\npath = \"{}\"\n\
         [[local]]\nname = \"absent\"\npath = \"{}\"\n",
        root.display(),
        absent.display()
    );
    // A missing directory does not stop the gateway from starting.
    let server = Server::launch(TempDir::new().unwrap(), &conf, None);
    check(&server, "root", &plain, work.path(), "three levels down");
    let path = format!("q/sensor/root/after/{AFTER}/before/{BEFORE}");
    let id = server.job_id(&path);
    let job = server.wait_final(&id);
    let events = job.to_string();
    assert!(
        events.contains("outside.pcap") && events.contains("follow_symlinks"),
        "{job}"
    );
    // The level below max_depth is named as not read.
    assert!(events.contains("below max_depth"), "{job}");
    // The missing one is down, with its reason, and its jobs fail naming it.
    let sensors = server.json("stats");
    let text = sensors.to_string();
    assert!(text.contains("not-mounted"), "{sensors}");
    let path = format!("q/sensor/absent/after/{AFTER}/before/{BEFORE}");
    let id = server.job_id(&path);
    let job = server.wait_final(&id);
    assert_eq!(job["state"], "Failed", "{job}");
    assert!(job.to_string().contains("not-mounted"), "{job}");
    // Mounted later: answers.
    std::fs::create_dir_all(&absent).unwrap();
    for (f, _) in &files {
        std::fs::copy(f, absent.join(f.file_name().unwrap())).unwrap();
    }
    check(&server, "absent", &plain, work.path(), "mounted later");
}

/// A real writer: tcpdump capturing loopback into a rotating directory (`-G 1`, `-U`: every
/// packet written at once) while Docket answers queries over it. Every answer given while the
/// files grow and rotate is whole records (tshark reads it to the end) and holds only packets
/// of the final capture; once tcpdump has stopped, the answer equals tcpdump → editcap →
/// mergecap over the files it wrote.
#[test]
fn a_directory_tcpdump_is_writing_answers_while_it_grows() {
    let work = TempDir::new().unwrap();
    let dir = work.path().join("live");
    std::fs::create_dir_all(&dir).unwrap();
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let filter = format!("udp and dst port {port}");
    let mut tcpdump = Command::new("tcpdump")
        .args(["-i", "lo", "-U", "-n", "-G", "1", "-Z", "root", "-w"])
        .arg(dir.join("trace-%s.pcap"))
        .arg(&filter)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // tcpdump says "listening on lo" once it captures.
    let mut err = std::io::BufReader::new(tcpdump.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut err, &mut line).unwrap();
    assert!(line.contains("listening"), "{line}");
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let conf = format!(
        "time_window = 1\n[[local]]\nname = \"live\"\npath = \"{}\"\n\
         epoch_names = [\"trace-{{epoch}}.pcap\"]\n",
        dir.display()
    );
    let server = Server::launch(TempDir::new().unwrap(), &conf, None);
    let (after, before) = (start - 5, start + 120);
    let sender = std::thread::spawn(move || {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for k in 0u32..500 {
            s.send_to(&k.to_be_bytes(), ("127.0.0.1", port)).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    });
    // Queries while tcpdump writes: each a new job (its own `before`), so none is a spool hit.
    let mut answers = Vec::new();
    let mut k = 0;
    while !sender.is_finished() {
        let path = format!("q/sensor/live/after/@{after}/before/@{}/pcap", before + k);
        answers.push(server.fetch(&path, work.path()));
        k += 1;
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    sender.join().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    // SIGINT: tcpdump flushes and closes its file.
    unsafe { libc::kill(tcpdump.id() as i32, libc::SIGINT) };
    tcpdump.wait().unwrap();
    let path = format!("q/sensor/live/after/@{after}/before/@{}/pcap", before + k);
    let ours = server.fetch(&path, work.path());
    let expected = oracle(
        std::slice::from_ref(&dir),
        "",
        after,
        before + k,
        work.path(),
    )
    .unwrap();
    assert_same_packets(&ours, &expected, "after tcpdump stopped");
    let all = common::tshark_packets(&expected);
    // A loaded machine may drop some at capture; most must be there.
    assert!(all.len() >= 400, "tcpdump captured {} of 500", all.len());
    let mut growing = 0;
    for a in &answers {
        let got = common::tshark_packets(a);
        assert!(
            got.iter().all(|p| all.contains(p)),
            "an answer while writing held a packet the final capture does not"
        );
        if !got.is_empty() && got.len() < all.len() {
            growing += 1;
        }
    }
    assert!(growing > 0, "no answer was given while the files grew");
}

/// The first query over a rotation directory nobody has read whole (no index, files known by
/// name and first packet only) merges each file from its name's time, and reads what it
/// listed: files compressed away (`tcpdump -z gzip`: `X` becomes `X.gz`) before the merge
/// reaches them are still read whole. Oracle: mergecap over the files as they were.
#[test]
fn a_first_query_reads_the_rotation_files_it_listed_though_they_are_compressed_away() {
    let work = TempDir::new().unwrap();
    // Two copies of the bulk trace, 700 s apart (about 25 MB: more than a direct job buffers
    // ahead of its client), cut every 30 s, and the ground-truth trace (outside the window).
    let dir = rotated_dir(work.path(), 2);
    let n = std::fs::read_dir(&dir).unwrap().count();
    assert!(n >= 40, "{n} files");
    let before_gzip = work.path().join("as-listed");
    std::fs::create_dir(&before_gzip).unwrap();
    for e in std::fs::read_dir(&dir).unwrap() {
        let f = e.unwrap().path();
        std::fs::copy(&f, before_gzip.join(f.file_name().unwrap())).unwrap();
    }
    // Settled files (the merge opens a file that may still be written at once).
    std::thread::sleep(std::time::Duration::from_secs(3));
    let conf = format!(
        "spool = false\n[[local]]\nname = \"rot\"\npath = \"{}\"\nindex = false\n",
        dir.display()
    );
    let server = Server::launch(TempDir::new().unwrap(), &conf, None);
    let (after, before) = ("2023-06-01T11:00:00Z", "2023-06-01T13:00:00Z");
    // A client at 2 MB/s paces the job (no spool): the reader waits early in the directory.
    let out = work.path().join("slow.pcap");
    let mut curl = server.stream_at(
        &format!("q/sensor/rot/after/{after}/before/{before}/pcap"),
        &out,
        "2M",
    );
    common::server::wait_for_bytes(&out, 1 << 20);
    // Every rotation file is compressed meanwhile, as `-z gzip` does after each rotation.
    let mut rotated: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("log.pcap."))
        .collect();
    rotated.sort();
    run_ok(Command::new("gzip").args(&rotated));
    assert!(curl.wait().unwrap().success());
    let expected = oracle(
        std::slice::from_ref(&before_gzip),
        "",
        epoch(after),
        epoch(before),
        work.path(),
    )
    .unwrap();
    assert_same_packets(
        &out,
        &expected,
        "first query, files compressed away under it",
    );
}
