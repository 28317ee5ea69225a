//! The index is an accelerator, never the judge: over every file of the corpus's `formats/`,
//! `protocols/` and `merge/` (and the bulk trace), a directory answered with its index gives
//! byte for byte what the same directory answers by scanning (`index = false`), for clause
//! sets and windows drawn at random from each file's own addresses and ports (tshark's view of
//! them, not Docket's) — and the indexed sensor really did write indexes.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::server::Server;
use tempfile::TempDir;

/// A small deterministic generator (the test must be reproducible from its seed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn pick<'a, T>(&mut self, v: &'a [T]) -> Option<&'a T> {
        (!v.is_empty()).then(|| &v[(self.next() % v.len() as u64) as usize])
    }
}

/// Every address and port tshark sees in `file`, and its first and last packet times.
fn values(file: &std::path::Path) -> (Vec<String>, Vec<String>, f64, f64) {
    let out = common::run_ok(Command::new("tshark").arg("-r").arg(file).args([
        "-T",
        "fields",
        "-E",
        "separator=;",
        "-e",
        "frame.time_epoch",
        "-e",
        "ip.addr",
        "-e",
        "ipv6.addr",
        "-e",
        "tcp.port",
        "-e",
        "udp.port",
    ]));
    let (mut addrs, mut ports, mut lo, mut hi) = (Vec::new(), Vec::new(), f64::MAX, f64::MIN);
    for line in String::from_utf8(out).unwrap().lines() {
        let f: Vec<&str> = line.split(';').collect();
        if let Ok(t) = f[0].parse::<f64>() {
            lo = lo.min(t);
            hi = hi.max(t);
        }
        for (i, v) in f.iter().enumerate().skip(1) {
            for x in v.split(',').filter(|x| !x.is_empty()) {
                if i <= 2 {
                    addrs.push(x.to_owned());
                } else if x != "0" {
                    ports.push(x.to_owned());
                }
            }
        }
    }
    addrs.sort();
    addrs.dedup();
    ports.sort();
    ports.dedup();
    (addrs, ports, lo, hi)
}

#[test]
fn indexed_and_scanned_answers_are_the_same_bytes() {
    let work = TempDir::new().unwrap();
    let mut files = common::every_kind_of_file();
    files.push(common::corpus().join("bulk/mix-19-real-captures-10min.pcap"));
    let sensors = common::one_sensor_per_file(work.path(), "f", &files);
    let mut conf = String::from("time_window = 1\n");
    for (name, dir, _) in &sensors {
        for (suffix, index) in [("i", true), ("s", false)] {
            conf.push_str(&format!(
                "[[local]]\nname = \"{name}{suffix}\"\npath = \"{}\"\nfollow_symlinks = true\n\
                 index = {index}\n",
                dir.display()
            ));
        }
    }
    let server = Server::launch(TempDir::new().unwrap(), &conf, None);
    let mut rng = Rng(0x005e_edd0_c7e7);
    let mut asked = 0;
    let mut selective = 0;
    for (name, _, file) in &sensors {
        let (addrs, ports, lo, hi) = values(file);
        // Packets before 1970 or after 9999 cannot be asked for (the grammar's range).
        if lo > hi || lo < 1.0 || hi > 253_402_300_000.0 {
            continue;
        }
        for _ in 0..4 {
            let mut clauses = Vec::new();
            if let Some(a) = rng.pick(&addrs) {
                if rng.next() % 3 != 0 {
                    clauses.push(format!("host/{a}"));
                } else {
                    let bits = if a.contains(':') { 64 } else { 16 };
                    clauses.push(format!("net/{a}/{bits}"));
                }
            }
            if let Some(p) = rng.pick(&ports) {
                if rng.next() % 2 == 0 {
                    clauses.push(format!("port/{p}"));
                }
            }
            match rng.next() % 4 {
                0 => clauses.push("tcp".into()),
                1 => clauses.push("udp".into()),
                _ => {}
            }
            // A window: the whole file, or a part of it.
            let span = hi - lo;
            let (a, b) = (
                (rng.next() % 100) as f64 / 100.0,
                (rng.next() % 100) as f64 / 100.0,
            );
            let (after, before) = if rng.next() % 2 == 0 {
                (lo.floor() as i64, hi.ceil() as i64 + 1)
            } else {
                (
                    (lo + span * a.min(b)).floor() as i64,
                    (lo + span * a.max(b)).ceil() as i64 + 1,
                )
            };
            let path = |sensor: &str| {
                format!(
                    "q/sensor/{sensor}/{}/after/@{after}/before/@{before}/pcap",
                    clauses.join("/")
                )
                .replace("//", "/")
            };
            let (c1, indexed) = server.get(&path(&format!("{name}i")), &[]);
            let (c2, scanned) = server.get(&path(&format!("{name}s")), &[]);
            assert_eq!((c1, c2), (200, 200), "{}", path(name));
            if indexed != scanned {
                let job = |sensor: &str| {
                    let p = path(sensor);
                    server.json(p.strip_suffix("/pcap").unwrap())
                };
                panic!(
                    "{} | {}: indexed {} bytes, scanned {}\nindexed job: {}\nscanned job: {}",
                    file.display(),
                    path(name),
                    indexed.len(),
                    scanned.len(),
                    job(&format!("{name}i")),
                    job(&format!("{name}s")),
                );
            }
            asked += 1;
            if !clauses.is_empty() && scanned.len() > 24 {
                selective += 1;
            }
        }
    }
    assert!(
        asked > 200 && selective > 50,
        "{asked} asked, {selective} selective"
    );
    // The indexed sensors wrote indexes; the scanning ones did not.
    let index_dir: PathBuf = server.dir.path().join("spool-index");
    let written = |prefix: char| {
        std::fs::read_dir(&index_dir)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(prefix))
                    .map(|e| std::fs::read_dir(e.path()).map_or(0, |x| x.count()))
                    .sum::<usize>()
            })
            .unwrap_or(0)
    };
    assert!(written('i') > 30, "indexes written: {}", written('i'));
    assert_eq!(written('s'), 0);
}

/// A capture whose records go back in time, beside another that overlaps it: the index skips
/// some of its records. Indexed and scanned answers are the same bytes, and the same packets in
/// the same order as tcpdump per file then mergecap (each file gated before the merge).
#[test]
fn a_file_out_of_time_order_answers_as_its_scan() {
    let work = TempDir::new().unwrap();
    let dir = work.path().join("d");
    std::fs::create_dir(&dir).unwrap();
    let src = common::corpus().join("merge/ground-truth__pcpp-tls2.pcap");
    let (late, early) = (
        work.path().join("late.pcap"),
        work.path().join("early.pcap"),
    );
    common::run_ok(
        Command::new("editcap")
            .args(["-r"])
            .arg(&src)
            .arg(&early)
            .arg("1-3000"),
    );
    common::run_ok(
        Command::new("editcap")
            .args(["-r"])
            .arg(&src)
            .arg(&late)
            .arg("3001-7416"),
    );
    // The later half first (69 slices of 64 records exactly, so no slice holds both halves),
    // then the earlier: one step back in time, thousands of records long.
    common::run_ok(
        Command::new("mergecap")
            .args(["-a", "-F", "pcap", "-w"])
            .arg(dir.join("a.pcap"))
            .arg(&late)
            .arg(&early),
    );
    std::os::unix::fs::symlink(
        common::corpus().join("merge/sensor-c__tls2-streams-mod3-2-and-non-tcp.nsec.pcap"),
        dir.join("b.pcap"),
    )
    .unwrap();
    let conf = format!(
        "time_window = 1\n[[local]]\nname = \"i\"\npath = \"{0}\"\nfollow_symlinks = true\n\
         [[local]]\nname = \"s\"\npath = \"{0}\"\nfollow_symlinks = true\nindex = false\n",
        dir.display()
    );
    let server = Server::launch(TempDir::new().unwrap(), &conf, None);
    // Windows over the whole trace, and over its first part only: the later records that lead
    // the file are then outside the window, so an index would skip them.
    for (clauses, before) in [
        ("host/2620:1ec:c11::200", "07:00:00"),
        ("tcp/port/443", "07:00:00"),
        ("port/443", "06:56:30"),
        ("tcp", "06:56:30"),
        ("", "06:56:30"),
    ] {
        let path = |s: &str| {
            format!("q/sensor/{s}/{clauses}/after/2021-01-05T06:55:00Z/before/2021-01-05T{before}Z/pcap")
                .replace("//", "/")
        };
        let (_, indexed) = server.get(&path("i"), &[]);
        let (_, scanned) = server.get(&path("s"), &[]);
        assert!(
            indexed.len() > 24,
            "{clauses} before {before}: something matches"
        );
        assert!(
            indexed == scanned,
            "{clauses}: {} vs {} bytes",
            indexed.len(),
            scanned.len()
        );
        // And both are what tcpdump per file, then mergecap, make of the directory: each
        // file's packets are gated before the merge.
        let filter = clauses
            .replace("host/", "host ")
            .replace("tcp/port/", "tcp and port ")
            .replace("port/", "port ");
        let want = common::server::oracle(
            std::slice::from_ref(&dir),
            &filter,
            common::server::epoch("2021-01-05T06:55:00Z"),
            common::server::epoch(&format!("2021-01-05T{before}Z")),
            work.path(),
        )
        .expect("something matches");
        let ours = work
            .path()
            .join(format!("ours-{}.pcap", common::server::rand_suffix()));
        std::fs::write(&ours, &indexed).unwrap();
        common::server::assert_same_packets(&ours, &want, &format!("{clauses} before {before}"));
    }
}
