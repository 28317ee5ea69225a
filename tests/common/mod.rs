//! Shared test helpers: where the team corpus lives, and what the real tools (tshark,
//! mergecap, capinfos, tcpdump) say about a capture. The tools are the oracles; nothing here
//! parses captures with Docket's own code.
#![allow(dead_code)]

pub mod front;
pub mod server;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The team's capture corpus: `$DOCKET_PCAPS`, else `../shared/pcaps` beside the checkout.
pub fn corpus() -> PathBuf {
    if let Ok(p) = std::env::var("DOCKET_PCAPS") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/pcaps")
}

/// Every file of a corpus directory, sorted.
pub fn corpus_files(dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(corpus().join(dir))
        .unwrap_or_else(|e| panic!("corpus dir {dir}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

/// Every file of the corpus's `formats/`, `protocols/` and `merge/`: every link type, format
/// corner and encapsulation the corpus has.
pub fn every_kind_of_file() -> Vec<PathBuf> {
    ["formats", "protocols", "merge"]
        .iter()
        .flat_map(|g| corpus_files(g))
        .collect()
}

/// One local "sensor" per file: `work/<prefix><n>/` holding a link to the file. Returns (sensor
/// name, directory, file) in the order given.
pub fn one_sensor_per_file(
    work: &Path,
    prefix: &str,
    files: &[PathBuf],
) -> Vec<(String, PathBuf, PathBuf)> {
    files
        .iter()
        .enumerate()
        .map(|(n, f)| {
            let name = format!("{prefix}{n}");
            let dir = work.join(&name);
            std::fs::create_dir(&dir).unwrap();
            std::os::unix::fs::symlink(f, dir.join(f.file_name().unwrap())).unwrap();
            (name, dir, f.clone())
        })
        .collect()
}

/// One packet as tshark reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharkPacket {
    /// `frame.time_epoch`, e.g. `1609829741.394271000`.
    pub time: String,
    /// `frame.len`.
    pub len: u32,
    /// `frame.cap_len`.
    pub cap_len: u32,
    /// `frame.encap_type` (Wireshark's WTAP_ENCAP number, not a DLT).
    pub encap: u32,
    /// The frame bytes, from `tshark -x`.
    pub data: Vec<u8>,
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Every packet of `path` as tshark reads it: fields from one pass, bytes from a hex pass
/// with dissection off.
pub fn tshark_packets(path: &Path) -> Vec<SharkPacket> {
    let fields = run(Command::new("tshark").arg("-r").arg(path).args([
        "-T",
        "fields",
        "-E",
        "separator=,",
        "-e",
        "frame.time_epoch",
        "-e",
        "frame.len",
        "-e",
        "frame.cap_len",
        "-e",
        "frame.encap_type",
        "--disable-protocol",
        "ALL",
    ]));
    let hex =
        run(Command::new("tshark")
            .arg("-r")
            .arg(path)
            .args(["-x", "--disable-protocol", "ALL"]));
    let dumps = parse_hex_dumps(&String::from_utf8(hex).unwrap());
    let fields = String::from_utf8(fields).unwrap();
    let mut dumps = dumps.into_iter();
    let packets: Vec<SharkPacket> = fields
        .lines()
        .filter(|l| !l.is_empty())
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            if f[3].is_empty() {
                // Not a packet: tshark shows pcapng custom blocks as records without an
                // encapsulation (and dumps their bytes). Docket skips them.
                if f[2] != "0" {
                    dumps.next();
                }
                return None;
            }
            let num = |i: usize| -> u32 {
                f[i].parse()
                    .unwrap_or_else(|_| panic!("field {i} of {l:?} from {path:?}"))
            };
            let cap_len = num(2);
            Some(SharkPacket {
                time: f[0].to_string(),
                len: num(1),
                cap_len,
                encap: num(3),
                // tshark prints no hex block for a frame with no captured bytes.
                data: if cap_len == 0 {
                    Vec::new()
                } else {
                    dumps.next().expect("a hex dump per non-empty frame")
                },
            })
        })
        .collect();
    assert!(
        dumps.next().is_none(),
        "more hex dumps than frames in {path:?}"
    );
    packets
}

/// Parses `tshark -x` output: one blank-line separated block per frame; in a block with
/// several data sources ("Frame (N bytes):", "Reassembled TCP (M bytes):"), only the frame's.
fn parse_hex_dumps(text: &str) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    let mut cur: Option<Vec<u8>> = None;
    let mut in_frame = true;
    for line in text.lines() {
        if line.is_empty() {
            if let Some(f) = cur.take() {
                frames.push(f);
            }
            in_frame = true;
            continue;
        }
        if line.ends_with("bytes):") {
            in_frame = line.starts_with("Frame (");
            cur.get_or_insert_with(Vec::new);
            continue;
        }
        let buf = cur.get_or_insert_with(Vec::new);
        if !in_frame {
            continue;
        }
        let Some(sp) = line.find("  ") else { continue };
        let hex = &line[sp + 2..(sp + 2 + 48).min(line.len())];
        for tok in hex.split_whitespace() {
            buf.push(
                u8::from_str_radix(tok, 16).unwrap_or_else(|_| panic!("hex {tok:?} in {line:?}")),
            );
        }
    }
    if let Some(f) = cur.take() {
        frames.push(f);
    }
    frames
}

/// Maps a DLT/LINKTYPE value to the WTAP_ENCAP number tshark prints, for the link types of
/// the corpus (Wireshark's `wiretap/pcap-common.c` table). Raw IP has two DLTs (12, 101) and
/// one encapsulation.
pub fn wtap_encap(dlt: u16) -> u32 {
    match dlt {
        0 => 15,
        1 => 1,
        9 => 4,
        12 | 101 => 7,
        107 => 29,
        113 => 25,
        127 => 23,
        228 => 129,
        229 => 130,
        242 => 180,
        253 => 158,
        276 => 210,
        other => panic!("no WTAP mapping for DLT {other} in the test table"),
    }
}

/// The first line a child prints on its piped stdout (its readiness line: no sleeps).
pub fn first_line(child: &mut std::process::Child) -> String {
    use std::io::BufRead;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout piped"))
        .read_line(&mut line)
        .expect("readable stdout");
    line.trim().to_owned()
}

/// Runs the built `docket` binary.
pub fn docket() -> Command {
    Command::new(env!("CARGO_BIN_EXE_docket"))
}

/// Runs a command and requires success; returns stdout.
pub fn run_ok(cmd: &mut Command) -> Vec<u8> {
    run(cmd)
}
