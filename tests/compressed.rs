//! Compressed capture stores, written by the real tools the field uses: rotations split by
//! `editcap -i`, then compressed with `gzip`, Debian's `lz4` (the LZ4 frame format Suricata's
//! pcap-log writes) and `zstd`. A local directory of them must answer exactly what the same
//! directory uncompressed answers to tcpdump → editcap → mergecap (the oracle), and a damaged
//! compressed file must give the packets before its damage and be named in the job.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::server::{assert_same_packets, epoch, oracle, Server};
use common::{corpus, run_ok};
use tempfile::TempDir;

const AFTER: &str = "2023-06-01T12:00:00Z";
const BEFORE: &str = "2023-06-01T12:20:00Z";

/// The bulk trace as one-minute rotations in `plain/`, and the same files compressed in
/// turn with gzip, lz4 and zstd (and one left plain) in `mixed/`, names unchanged: the format
/// is found from the bytes, not the name.
fn rotations(work: &Path) -> (PathBuf, PathBuf) {
    let plain = work.join("plain");
    let mixed = work.join("mixed");
    std::fs::create_dir_all(&plain).unwrap();
    std::fs::create_dir_all(&mixed).unwrap();
    run_ok(
        Command::new("editcap")
            .args(["-F", "pcap", "-i", "60"])
            .arg(corpus().join("bulk/mix-19-real-captures-10min.pcap"))
            .arg(plain.join("rot.pcap")),
    );
    let mut files: Vec<PathBuf> = std::fs::read_dir(&plain)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 8, "{files:?}");
    for (i, f) in files.iter().enumerate() {
        let out = mixed.join(f.file_name().unwrap());
        let tool: Option<&[&str]> = match i % 4 {
            0 => Some(&["gzip", "-c"]),
            1 => Some(&["lz4", "-c"]),
            2 => Some(&["zstd", "-q", "-c"]),
            _ => None,
        };
        match tool {
            Some(t) => {
                let bytes = run_ok(Command::new(t[0]).args(&t[1..]).arg(f));
                std::fs::write(&out, bytes).unwrap();
            }
            None => {
                std::fs::copy(f, &out).unwrap();
            }
        }
    }
    (plain, mixed)
}

#[test]
fn compressed_rotations_answer_like_the_uncompressed_files() {
    let work = TempDir::new().unwrap();
    let (plain, mixed) = rotations(work.path());
    let server = Server::start(&[("mixed", mixed)], "");
    let host = "10.0.0.6";
    for (path, filter) in [
        (
            format!("q/after/{AFTER}/before/{BEFORE}/pcap"),
            String::new(),
        ),
        (
            format!("q/host/{host}/after/{AFTER}/before/{BEFORE}/pcap"),
            format!("host {host}"),
        ),
    ] {
        let ours = server.fetch(&path, work.path());
        let expected = oracle(
            std::slice::from_ref(&plain),
            &filter,
            epoch(AFTER),
            epoch(BEFORE),
            work.path(),
        )
        .expect("the bulk trace has packets in the window");
        assert_same_packets(&ours, &expected, &path);
    }
    // Nothing was named as unreadable.
    let stats = server.json("stats");
    assert_eq!(
        stats["mixed"]["files"]["unreadable"],
        serde_json::json!([]),
        "{stats:#}"
    );
}

#[test]
fn a_damaged_compressed_file_gives_its_packets_before_the_damage() {
    let work = TempDir::new().unwrap();
    let plain = corpus().join("bulk/mix-19-real-captures-10min.pcap");
    let dir = work.path().join("cut");
    std::fs::create_dir(&dir).unwrap();
    for (name, tool) in [
        ("cut.gz", ["gzip", "-c"]),
        ("cut.lz4", ["lz4", "-c"]),
        ("cut.zst", ["zstd", "-c"]),
    ] {
        let whole = run_ok(Command::new(tool[0]).arg(tool[1]).arg(&plain));
        // Cut in the middle, as a copy interrupted by a full disk would leave it.
        let cut = &whole[..whole.len() / 2];
        let one = work.path().join(name);
        std::fs::create_dir(&one).unwrap();
        std::fs::write(one.join(name), cut).unwrap();
        // The oracle: what the tool itself decompresses from the cut file, up to its last
        // whole record, read by tshark.
        let decoded = Command::new(tool[0])
            .args(["-d", "-c"])
            .arg(one.join(name))
            .output()
            .unwrap()
            .stdout;
        let prefix = work.path().join(format!("{name}.prefix.pcap"));
        std::fs::write(&prefix, whole_records(&decoded)).unwrap();
        let expected = common::tshark_packets(&prefix);
        assert!(!expected.is_empty(), "{name}");
        let server = Server::start(&[("one", one.clone())], "");
        let q = "q/after/2023-06-01T12:00:00Z/before/2023-06-01T13:00:00Z";
        let id = server.job_id(q);
        let st = server.wait_final(&id);
        let events = st["events"].to_string();
        assert!(
            events.contains(name) && events.contains("stream damaged"),
            "{name}: {st:#}"
        );
        let ours = server.fetch(&format!("{q}/pcap"), work.path());
        let got = common::tshark_packets(&ours);
        assert!(
            got == expected,
            "{name}: {} of {} packets",
            got.len(),
            expected.len()
        );
    }
}

/// The classic little-endian pcap `data` up to its last whole record.
fn whole_records(data: &[u8]) -> &[u8] {
    let mut end = 24;
    while let Some(h) = data.get(end..end + 16) {
        let caplen = u32::from_le_bytes(h[8..12].try_into().unwrap()) as usize;
        if data.len() < end + 16 + caplen {
            break;
        }
        end += 16 + caplen;
    }
    &data[..end.min(data.len())]
}
