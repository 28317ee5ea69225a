//! `docket merge` against `mergecap` (the oracle) on the corpus: identical records (timestamp,
//! link type, bytes) in the same order. Plus what mergecap cannot show: a failing input does
//! not stop the others, and the output is never left half-written under its final name.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{corpus, docket, run_ok, tshark_packets};
use tempfile::TempDir;

fn merge_set() -> Vec<PathBuf> {
    let m = corpus().join("merge");
    vec![
        m.join("sensor-a__tls2-streams-mod3-0.pcap"),
        m.join("sensor-b__tls2-streams-mod3-1.pcapng"),
        m.join("sensor-c__tls2-streams-mod3-2-and-non-tcp.nsec.pcap"),
    ]
}

fn docket_merge(out: &Path, format: Option<&str>, inputs: &[PathBuf]) -> std::process::Output {
    let mut cmd = docket();
    cmd.arg("merge").arg("-w").arg(out);
    if let Some(f) = format {
        cmd.args(["-F", f]);
    }
    cmd.args(inputs).output().unwrap()
}

fn mergecap(out: &Path, format: &str, inputs: &[PathBuf]) {
    run_ok(
        Command::new("mergecap")
            .args(["-F", format, "-w"])
            .arg(out)
            .args(inputs),
    );
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

/// Classic pcap outputs: same magic and link type, and byte-identical records.
fn assert_same_classic(ours: &Path, theirs: &Path) {
    let (a, b) = (read(ours), read(theirs));
    assert_eq!(a[..4], b[..4], "magic");
    assert_eq!(a[20..24], b[20..24], "link type");
    assert!(
        a[24..] == b[24..],
        "records of {ours:?} differ from mergecap's {theirs:?}"
    );
}

/// Any outputs: the same packets as tshark reads them (time, lengths, link type, bytes).
fn assert_same_packets(ours: &Path, theirs: &Path) {
    let (a, b) = (tshark_packets(ours), tshark_packets(theirs));
    assert_eq!(a.len(), b.len(), "packet counts");
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert_eq!(x, y, "packet {}", i + 1);
    }
}

#[test]
fn three_sensors_in_three_formats_merge_as_mergecap_does() {
    let dir = TempDir::new().unwrap();
    let (ours, theirs) = (dir.path().join("d.pcap"), dir.path().join("m.pcap"));
    let out = docket_merge(&ours, None, &merge_set());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // One link type, one ns input: the rule says nanosecond pcap.
    mergecap(&theirs, "nsecpcap", &merge_set());
    assert_same_classic(&ours, &theirs);
    // And as pcapng on request.
    let (ours, theirs) = (dir.path().join("d.pcapng"), dir.path().join("m.pcapng"));
    assert!(docket_merge(&ours, Some("pcapng"), &merge_set())
        .status
        .success());
    mergecap(&theirs, "pcapng", &merge_set());
    assert_same_packets(&ours, &theirs);
}

#[test]
fn natural_pair_and_duplicate_taps_merge_as_mergecap_does() {
    let m = corpus().join("merge");
    let dir = TempDir::new().unwrap();
    for (k, inputs) in [
        vec![
            m.join("natural-pair-requests__pcpp-4KHttpRequests.pcap"),
            m.join("natural-pair-responses__pcpp-650HttpResponses.pcap"),
        ],
        // The two-taps case: exact duplicates (same time, same bytes) interleave by tie rule.
        vec![
            m.join("sensor-a__tls2-streams-mod3-0.pcap"),
            m.join("ground-truth__pcpp-tls2.pcap"),
        ],
        vec![
            m.join("ground-truth__pcpp-tls2.pcap"),
            m.join("sensor-a__tls2-streams-mod3-0.pcap"),
        ],
    ]
    .into_iter()
    .enumerate()
    {
        let (ours, theirs) = (
            dir.path().join(format!("d{k}")),
            dir.path().join(format!("m{k}")),
        );
        assert!(docket_merge(&ours, None, &inputs).status.success());
        mergecap(&theirs, "pcap", &inputs);
        assert_same_classic(&ours, &theirs);
    }
}

#[test]
fn mixes_of_formats_merge_as_mergecap_does() {
    let f = corpus().join("formats");
    let dir = TempDir::new().unwrap();
    // All Ethernet, both byte orders, µs and ns, pcap and pcapng (two sections, opposite
    // byte orders): classic ns pcap.
    let ethernet: Vec<PathBuf> = [
        "eth-le-usec__pcpp-DnsPackets.pcap",
        "eth-be-usec__tcpdump-pptp.pcap",
        "eth-le-nsec__zeek-get-to-ssh-server.pcap",
        "eth-be-nsec__pcpp-nanosecs_big_endian.pcap",
        "pcapng-le-nsec__zeek-cooper-grill-dvwa.pcapng",
        "derived-pcapng-2-sections-le-then-be.pcapng",
        "pcapng-2-if-nsec-and-usec__zeek-pcapng-multi-interface.pcapng",
    ]
    .iter()
    .map(|n| f.join(n))
    .collect();
    let (ours, theirs) = (dir.path().join("eth-d"), dir.path().join("eth-m"));
    assert!(docket_merge(&ours, None, &ethernet).status.success());
    mergecap(&theirs, "nsecpcap", &ethernet);
    assert_same_classic(&ours, &theirs);
    // Several link types: pcapng, compared packet by packet.
    let mixed: Vec<PathBuf> = [
        "sll__arkime-gtp-iphone.pcap",
        "raw-ip-101__pcpp-raw_ip.pcap",
        "pcapng-multi-if-3-linktypes__pcpp-many_interfaces-1.pcapng",
        "null-loopback__pcpp-null_loopback.pcap",
        "pcapng-eth-plus-sll__pcpp-pcapng-example.pcapng",
        "sll2__zeek-linux_dlt_sll2.pcap",
    ]
    .iter()
    .map(|n| f.join(n))
    .collect();
    let (ours, theirs) = (dir.path().join("mix-d"), dir.path().join("mix-m"));
    let out = docket_merge(&ours, None, &mixed);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        &read(&ours)[..4],
        &[0x0a, 0x0d, 0x0d, 0x0a],
        "pcapng by the output rule"
    );
    mergecap(&theirs, "pcapng", &mixed);
    assert_same_packets(&ours, &theirs);
}

/// The bulk trace split round-robin N ways (tshark selects every N-th frame), then merged:
/// identical to mergecap's merge of the parts, and the same size as the original (not the
/// same order: the trace has 389 equal timestamps, which the tie rule may reorder).
#[test]
fn bulk_split_n_ways_merges_back_as_mergecap_does() {
    let bulk = corpus().join("bulk/mix-19-real-captures-10min.pcap");
    let dir = TempDir::new().unwrap();
    for n in [3, 8] {
        let parts: Vec<PathBuf> = (0..n)
            .map(|k| {
                let p = dir.path().join(format!("part{n}-{k}.pcap"));
                run_ok(
                    Command::new("tshark")
                        .arg("-r")
                        .arg(&bulk)
                        .args([
                            "-Y",
                            &format!("frame.number % {n} == {k}"),
                            "-F",
                            "pcap",
                            "-w",
                        ])
                        .arg(&p),
                );
                p
            })
            .collect();
        let (ours, theirs) = (
            dir.path().join(format!("d{n}")),
            dir.path().join(format!("m{n}")),
        );
        assert!(docket_merge(&ours, None, &parts).status.success());
        mergecap(&theirs, "pcap", &parts);
        assert_same_classic(&ours, &theirs);
        assert_eq!(
            read(&ours).len(),
            read(&bulk).len(),
            "merge of the {n} parts"
        );
    }
}

/// A truncated input gives its good packets and fails alone. mergecap aborts the whole merge
/// on such an input, so the oracle is: editcap salvages the good packets, mergecap merges the
/// salvage with the other inputs.
#[test]
fn a_truncated_input_fails_alone() {
    let dir = TempDir::new().unwrap();
    let bad = corpus().join("malformed/derived-truncated-mid-record-data.pcap");
    let good = corpus().join("merge/natural-pair-requests__pcpp-4KHttpRequests.pcap");
    let salvage = dir.path().join("salvage.pcap");
    // editcap reports the truncation but writes the packets before it.
    let _ = Command::new("editcap")
        .arg(&bad)
        .arg(&salvage)
        .output()
        .unwrap();
    let (ours, theirs) = (dir.path().join("d.pcap"), dir.path().join("m.pcap"));
    let out = docket_merge(&ours, None, &[good.clone(), bad.clone()]);
    assert_eq!(out.status.code(), Some(1), "an input failed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("truncated record data at offset 15697"),
        "{stderr}"
    );
    mergecap(&theirs, "pcap", &[good, salvage]);
    assert_same_classic(&ours, &theirs);
}

#[test]
fn stdout_output_equals_file_output_and_empty_inputs_give_a_valid_capture() {
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("d.pcap");
    assert!(docket_merge(&file, None, &merge_set()).status.success());
    let out = docket()
        .args(["merge", "-w", "-"])
        .args(merge_set())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(out.stdout == read(&file));
    // No packets at all: a valid, empty capture (a pipe reader must not break).
    let empty = dir.path().join("e.pcap");
    let inputs = [
        corpus().join("formats/empty-0-packets__arkime-empty.pcap"),
        corpus().join("formats/empty-0-packets__tcpdump-empty.pcapng"),
    ];
    assert!(docket_merge(&empty, None, &inputs).status.success());
    let info = run_ok(Command::new("capinfos").args(["-c", "-M"]).arg(&empty));
    assert!(String::from_utf8_lossy(&info).contains("Number of packets:   0"));
}

#[test]
fn a_failed_output_leaves_no_file_under_the_final_name() {
    let dir = TempDir::new().unwrap();
    // The output's directory does not exist: the merge fails and nothing is left behind.
    let out_path = dir.path().join("missing/d.pcap");
    let out = docket_merge(&out_path, None, &merge_set());
    assert_eq!(out.status.code(), Some(2));
    assert!(!out_path.exists());
    // /dev/full: every write fails with ENOSPC.
    let out = docket()
        .args(["merge", "-w", "-"])
        .args(merge_set())
        .stdout(std::fs::File::create("/dev/full").unwrap())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot write the output"));
}

/// Whatever Docket writes, tcpdump, tshark and capinfos read with the same packets as the
/// input: every single-file "merge" of the formats and protocols corpus, in the automatic
/// format and in pcapng.
#[test]
fn written_files_read_back_identically_in_tshark_tcpdump_and_capinfos() {
    let dir = TempDir::new().unwrap();
    let mut files = common::corpus_files("formats");
    files.extend(common::corpus_files("protocols"));
    for input in files {
        let mut shark_in = tshark_packets(&input);
        // Simple Packet Blocks have no time; Docket writes them at the epoch (README).
        for p in shark_in.iter_mut().filter(|p| p.time.is_empty()) {
            p.time = "0.000000000".into();
        }
        for format in [None, Some("pcapng")] {
            let out = dir.path().join("out");
            let o = docket_merge(&out, format, std::slice::from_ref(&input));
            assert!(
                o.status.success(),
                "{input:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            let shark_out = tshark_packets(&out);
            assert_eq!(shark_in.len(), shark_out.len(), "{input:?} as {format:?}");
            for (i, (a, b)) in shark_in.iter().zip(&shark_out).enumerate() {
                assert!(
                    a == b,
                    "tshark view of packet {} of {input:?} as {format:?}",
                    i + 1
                );
            }
            let info =
                String::from_utf8(run_ok(Command::new("capinfos").arg("-c").arg(&out))).unwrap();
            assert!(
                info.contains(&format!("Number of packets:   {}", shark_in.len())),
                "capinfos of {input:?} as {format:?}: {info}"
            );
            // tcpdump (libpcap) reads only captures with one link type per file.
            let tcpdump = |p: &Path| {
                Command::new("tcpdump")
                    .args(["-n", "-tt", "-x", "--time-stamp-precision=nano", "-r"])
                    .arg(p)
                    .output()
                    .unwrap()
            };
            let (a, b) = (tcpdump(&input), tcpdump(&out));
            if a.status.success() {
                assert!(
                    b.status.success(),
                    "tcpdump cannot read our {input:?} as {format:?}"
                );
                assert!(
                    a.stdout == b.stdout,
                    "tcpdump view of {input:?} as {format:?}"
                );
            }
        }
    }
}

/// `-w` naming a FIFO (or a device such as /dev/null) writes into it: renaming a temporary
/// file over it would replace the node with a regular file (it did, to /dev/null).
#[test]
fn output_to_a_fifo_stays_a_fifo() {
    use std::os::unix::fs::FileTypeExt;
    let dir = tempfile::TempDir::new().unwrap();
    let fifo = dir.path().join("out.fifo");
    common::run_ok(std::process::Command::new("mkfifo").arg(&fifo));
    let input = common::corpus_files("merge").into_iter().next().unwrap();
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(&fifo).unwrap())
    };
    common::run_ok(
        common::docket()
            .arg("merge")
            .arg("-w")
            .arg(&fifo)
            .arg(&input),
    );
    let got = reader.join().unwrap();
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
    let direct = dir.path().join("direct.pcap");
    common::run_ok(
        common::docket()
            .arg("merge")
            .arg("-w")
            .arg(&direct)
            .arg(&input),
    );
    assert!(got == std::fs::read(&direct).unwrap());
}
