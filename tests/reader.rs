//! The pcap reader against tshark (the oracle) on the whole corpus, plus the bad-input
//! contract: typed errors with offsets on every malformed file and on truncation at every
//! offset, and the same packets whatever the chunking.

mod common;

use bytes::Bytes;
use common::{corpus, corpus_files, tshark_packets, wtap_encap};
use docket::pcap::{Error, Next, Packet, Reader};
use proptest::prelude::*;

/// Reads `data` fed in chunks of `sizes` (cycled); returns packets and the final error.
fn read_chunked(data: &Bytes, sizes: &[usize]) -> (Vec<Packet>, Option<Error>) {
    let mut r = Reader::new();
    let mut packets = Vec::new();
    let mut pos = 0;
    let mut k = 0;
    loop {
        match r.next_packet() {
            Ok(Next::Packet(p)) => packets.push(p),
            Ok(Next::End) => return (packets, None),
            Err(e) => {
                // After an error the reader is done.
                assert!(matches!(r.next_packet(), Ok(Next::End)));
                return (packets, Some(e));
            }
            Ok(Next::NeedMore) => {
                if pos == data.len() {
                    r.finish();
                } else {
                    let n = sizes[k % sizes.len()].max(1).min(data.len() - pos);
                    k += 1;
                    r.push(data.slice(pos..pos + n));
                    pos += n;
                }
            }
        }
    }
}

fn read_file(path: &std::path::Path) -> Bytes {
    Bytes::from(std::fs::read(path).unwrap())
}

#[test]
fn every_valid_corpus_file_reads_as_tshark_reads_it() {
    let mut files = Vec::new();
    for dir in ["formats", "protocols", "merge", "bulk"] {
        files.extend(corpus_files(dir));
    }
    assert!(files.len() > 60, "corpus incomplete: {} files", files.len());
    for path in files {
        let data = read_file(&path);
        // 4093: a prime, so records straddle chunk boundaries at every possible phase.
        let (packets, err) = read_chunked(&data, &[4093]);
        assert_eq!(err, None, "{path:?}");
        let shark = tshark_packets(&path);
        assert_eq!(packets.len(), shark.len(), "packet count of {path:?}");
        for (i, (p, s)) in packets.iter().zip(&shark).enumerate() {
            let what = format!("{path:?} packet {}", i + 1);
            // A Simple Packet Block has no time: tshark shows none, Docket uses the epoch.
            let shark_time = if s.time.is_empty() {
                "0.000000000"
            } else {
                &s.time
            };
            assert_eq!(p.ts.to_string(), shark_time, "time of {what}");
            assert_eq!(p.orig_len, s.len, "length of {what}");
            assert_eq!(p.data.len() as u32, s.cap_len, "captured length of {what}");
            assert_eq!(wtap_encap(p.link_type), s.encap, "link type of {what}");
            assert_eq!(&p.data[..], &s.data[..], "bytes of {what}");
        }
    }
}

/// Expected outcome of each malformed file: packets before the fault, and the error. The
/// packet counts are capinfos' ("An error occurred after reading N packets").
#[test]
fn malformed_files_fail_with_typed_errors_after_their_good_packets() {
    fn check(name: &str, packets: usize, want: fn(&Option<Error>) -> bool) {
        let path = corpus().join("malformed").join(name);
        let (got, err) = read_chunked(&read_file(&path), &[1000]);
        assert_eq!(got.len(), packets, "{name}: packets before the fault");
        assert!(want(&err), "{name}: unexpected outcome {err:?}");
    }
    use Error::*;
    check(
        "bad-version-1.4__libpcap-pcap-invalid-version-1.pcap",
        0,
        |e| {
            matches!(
                e,
                Some(BadVersion {
                    major: 1,
                    minor: 4,
                    ..
                })
            )
        },
    );
    check(
        "bad-version-2.5__libpcap-pcap-invalid-version-2.pcap",
        0,
        |e| {
            matches!(
                e,
                Some(BadVersion {
                    major: 2,
                    minor: 5,
                    ..
                })
            )
        },
    );
    check("derived-bad-magic.pcap", 0, |e| {
        matches!(
            e,
            Some(NotPcap {
                found: "unknown format",
                ..
            })
        )
    });
    // Record #3 starts at 284; its incl_len (offset 292) is patched.
    check("derived-caplen-0xFFFFFFF0.pcap", 2, |e| {
        matches!(
            e,
            Some(TooLarge {
                offset: 284,
                len: 0xFFFF_FFF0,
                ..
            })
        )
    });
    check("derived-caplen-320KiB.pcap", 2, |e| {
        matches!(
            e,
            Some(TooLarge {
                offset: 284,
                len: 327_680,
                ..
            })
        )
    });
    check("derived-empty-file.pcap", 0, |e| {
        matches!(
            e,
            Some(Truncated {
                what: "file header",
                have: 0,
                ..
            })
        )
    });
    // An HTML error page after a valid header: its first bytes read as an absurd length.
    check("derived-garbage-after-header.pcap", 0, |e| {
        matches!(e, Some(TooLarge { offset: 24, .. }))
    });
    check("derived-pcapng-truncated-mid-block.pcapng", 29, |e| {
        matches!(
            e,
            Some(Truncated {
                what: "block",
                need: 92,
                have: 46,
                ..
            })
        )
    });
    check("derived-short-global-header.pcap", 0, |e| {
        matches!(
            e,
            Some(Truncated {
                what: "file header",
                need: 24,
                have: 10,
                ..
            })
        )
    });
    check("derived-trailing-garbage.pcap", 464, |e| {
        matches!(
            e,
            Some(Truncated {
                what: "record header",
                offset: 65390,
                have: 11,
                ..
            })
        )
    });
    check("derived-truncated-mid-record-data.pcap", 99, |e| {
        matches!(
            e,
            Some(Truncated {
                what: "record data",
                have: 54,
                ..
            })
        )
    });
    check("derived-truncated-mid-record-header.pcap", 99, |e| {
        matches!(
            e,
            Some(Truncated {
                what: "record header",
                have: 7,
                ..
            })
        )
    });
    // The second file's global header reads as a zero-caplen record, then an absurd one.
    check("derived-two-pcaps-concatenated.pcap", 16, |e| {
        matches!(e, Some(TooLarge { .. }))
    });
    check(
        "linktype-reserved-bits-header-only__libpcap-linktype-reserved-field-not-zero.pcap",
        0,
        |e| matches!(e, Some(ReservedLinkTypeBits { .. })),
    );
    check(
        "not-pcap-gzip__zeek-mime-header-size-limit.pcap.gz",
        0,
        |e| {
            matches!(
                e,
                Some(NotPcap {
                    found: "gzip-compressed data",
                    ..
                })
            )
        },
    );
    check("not-pcap-snoop__pcpp-solaris.snoop", 0, |e| {
        matches!(
            e,
            Some(NotPcap {
                found: "Solaris snoop capture",
                ..
            })
        )
    });
    check("not-pcap-zstd__pcpp-pcapng-example.pcapng.zst", 0, |e| {
        matches!(
            e,
            Some(NotPcap {
                found: "zstd-compressed data",
                ..
            })
        )
    });
    check(
        "pcapng-bad-version__libpcap-pcapng-invalid-vers-1.pcapng",
        0,
        |e| {
            matches!(
                e,
                Some(BadVersion {
                    format: "pcapng",
                    major: 0,
                    minor: 1,
                    ..
                })
            )
        },
    );
    check(
        "pcapng-block-without-shb__pcap-parser-err-eof.bin",
        0,
        |e| matches!(e, Some(NotPcap { .. })),
    );
    check(
        "pcapng-shb-option-too-long__libpcap-shb-option-too-long.pcapng",
        0,
        |e| matches!(e, Some(BadBlock { offset: 0, .. })),
    );
    // Valid structure, accepted: the modified (Kuznetzov) format is read (24-byte record
    // headers: 24 + 24 + 98 = 146 bytes, one whole packet, as capinfos counts).
    check(
        "kuznetzov-magic-truncated__pcap-parser-modified-format.pcap",
        1,
        |e| e.is_none(),
    );
    check("pcapng-95-idbs__pcpp-too_many_interfaces.pcapng", 1, |e| {
        e.is_none()
    });
    check(
        "ts-out-of-order__tcpdump-babel_update_oobr.pcap",
        107,
        |e| e.is_none(),
    );
    // FCS bits (26..31) of the link-type field are legal; libpcap masks them too.
    check(
        "linktype-upper-bits-set__tcpdump-aarp-heapoverflow-1.pcap",
        1,
        |e| e.is_none(),
    );
    // Documented tolerances (README): passed through unchanged.
    check(
        "caplen-gt-origlen__tcpdump-pim_header_asan-2.pcap",
        3,
        |e| e.is_none(),
    );
    check(
        "caplen-gt-snaplen__tcpdump-q933-heapoverflow-2.pcap",
        17,
        |e| e.is_none(),
    );
    check("caplen-gt-snaplen__zeek-trunc-hdr.pcap", 1, |e| e.is_none());
    check(
        "zero-caplen-records__tcpdump-bgp_vpn_rt-oobr.pcap",
        38,
        |e| e.is_none(),
    );
    check(
        "ts-usec-over-1e6__tcpdump-timestamp_invalid_micro.pcap",
        3,
        |e| e.is_none(),
    );
    check(
        "ts-nsec-over-1e9__tcpdump-timestamp_invalid_nano.pcap",
        3,
        |e| e.is_none(),
    );
    // Every malformed file is covered above.
    assert_eq!(corpus_files("malformed").len(), 30);
}

#[test]
fn lenient_cases_are_decided_as_documented() {
    let m = corpus().join("malformed");
    // A sub-second field >= 1 s is carried into the seconds (tshark prints it unnormalised).
    let (p, _) = read_chunked(
        &read_file(&m.join("ts-usec-over-1e6__tcpdump-timestamp_invalid_micro.pcap")),
        &[64],
    );
    let shark = tshark_packets(&m.join("ts-usec-over-1e6__tcpdump-timestamp_invalid_micro.pcap"));
    assert_eq!(
        shark[1].time, "1418145370.1000000000",
        "tshark's view of record 2"
    );
    assert_eq!(p[1].ts.to_string(), "1418145371.000000000");
    // Zero caplen: an empty payload with the original length kept.
    let f = m.join("zero-caplen-records__tcpdump-bgp_vpn_rt-oobr.pcap");
    let (p, _) = read_chunked(&read_file(&f), &[64]);
    let shark = tshark_packets(&f);
    for (a, b) in p.iter().zip(&shark) {
        assert_eq!((a.data.len() as u32, a.orig_len), (b.cap_len, b.len));
    }
    // caplen > snaplen: the bytes are kept as captured.
    let f = m.join("caplen-gt-snaplen__tcpdump-q933-heapoverflow-2.pcap");
    let (p, _) = read_chunked(&read_file(&f), &[64]);
    assert!(p
        .iter()
        .zip(tshark_packets(&f))
        .all(|(a, b)| a.data[..] == b.data[..]));
}

/// Cuts real files at every offset: the packets are always a prefix of the whole read, and
/// the outcome is a clean end or a `Truncated` error whose offset plus the bytes present is
/// the cut; never a panic, a hang, or a different packet.
#[test]
fn truncation_at_every_offset_is_a_typed_error_after_a_prefix() {
    for name in [
        "formats/eth-be-usec__tcpdump-pptp.pcap",
        "formats/pcapng-2-if-nsec-and-usec__zeek-pcapng-multi-interface.pcapng",
        "formats/eth-be-nsec__pcpp-nanosecs_big_endian.pcap",
        "formats/pcapng-nrb-spb__pcap-parser-test016-le.pcapng",
        "formats/derived-pcapng-2-sections-le-then-be.pcapng",
    ] {
        let full = read_file(&corpus().join(name));
        let (all, err) = read_chunked(&full, &[full.len()]);
        assert_eq!(err, None);
        for cut in 0..full.len() {
            let part = full.slice(..cut);
            for sizes in [&[cut.max(1)][..], &[7, 64]] {
                let (got, err) = read_chunked(&part, sizes);
                assert!(
                    got.len() <= all.len() && got[..] == all[..got.len()],
                    "{name} cut at {cut}"
                );
                match err {
                    // A cut at a block boundary is a shorter valid file.
                    None => {}
                    Some(Error::Truncated {
                        offset, need, have, ..
                    }) => {
                        assert_eq!(offset + have, cut as u64, "{name} cut at {cut}");
                        assert!(need > have);
                    }
                    Some(e) => panic!("{name} cut at {cut}: {e:?}"),
                }
            }
        }
        // A cut that ends before the last packet's record ends is never a clean end.
        let (got, err) = read_chunked(&full.slice(..full.len() - 1), &[4096]);
        assert!(err.is_some() || got.len() == all.len(), "{name}");
    }
}

#[test]
fn payloads_are_slices_of_the_input_chunk() {
    let data = read_file(&corpus().join("merge/sensor-b__tls2-streams-mod3-1.pcapng"));
    let range = data.as_ptr() as usize..data.as_ptr() as usize + data.len();
    let (packets, err) = read_chunked(&data, &[data.len()]);
    assert_eq!(err, None);
    for p in packets.iter().filter(|p| !p.data.is_empty()) {
        assert!(
            range.contains(&(p.data.as_ptr() as usize)),
            "payload was copied"
        );
    }
}

#[test]
fn jumbo_record_straddling_tiny_chunks_is_read_whole() {
    let f = corpus().join("formats/jumbo-80k-record__tcpdump-bigtcp-ipv6.pcap");
    let (p, err) = read_chunked(&read_file(&f), &[1, 3, 1000]);
    assert_eq!(err, None);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].data.len(), 80_054);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]
    /// The same bytes in any chunking give the same packets and the same outcome.
    #[test]
    fn any_chunking_gives_the_same_packets(
        file in prop::sample::select(vec![
            "formats/derived-pcapng-2-sections-le-then-be.pcapng",
            "formats/pcapng-eth-plus-sll__pcpp-pcapng-example.pcapng",
            "formats/eth-be-nsec__pcpp-nanosecs_big_endian.pcap",
            "formats/pcapng-multi-if-3-linktypes__pcpp-many_interfaces-1.pcapng",
            "malformed/derived-truncated-mid-record-data.pcap",
            "malformed/derived-caplen-320KiB.pcap",
            "protocols/vxlan__zeek-vxlan-encapsulated-http.pcap",
        ]),
        sizes in prop::collection::vec(1usize..3000, 1..16),
    ) {
        let data = read_file(&corpus().join(file));
        let whole = read_chunked(&data, &[data.len().max(1)]);
        let chunked = read_chunked(&data, &sizes);
        prop_assert_eq!(whole.0, chunked.0);
        // The same error kind and offset (`have` may differ: it counts what was buffered).
        prop_assert_eq!(
            whole.1.map(|e| std::mem::discriminant(&e)),
            chunked.1.map(|e| std::mem::discriminant(&e))
        );
    }
}

/// pcapng corners Wireshark reads, written here block by block (no tool writes them on
/// demand) and read by tshark as the oracle: binary `if_tsresol` (2^-n, the high bit set —
/// pcap-parser refuses every such value), a decimal one, the obsolete Packet Block (type 2)
/// beside Enhanced Packet Blocks, and blocks whose length fields leave out their padding.
#[test]
fn pcapng_corners_read_as_tshark_reads_them() {
    fn block(kind: u32, body: &[u8]) -> Vec<u8> {
        let len = (12 + body.len()) as u32;
        [
            &kind.to_le_bytes()[..],
            &len.to_le_bytes(),
            body,
            &len.to_le_bytes(),
        ]
        .concat()
    }
    fn padded(data: &[u8]) -> Vec<u8> {
        let mut v = data.to_vec();
        v.resize(data.len().div_ceil(4) * 4, 0);
        v
    }
    let mut file = block(
        0x0a0d_0d0a,
        &[
            &0x1a2b_3c4du32.to_le_bytes()[..],
            &[1, 0, 0, 0],
            &(-1i64).to_le_bytes(),
        ]
        .concat(),
    );
    let resolutions: [u8; 5] = [0x88, 0x94, 0x9e, 0xa0, 9];
    for r in resolutions {
        // Ethernet, snaplen 0; if_tsresol (code 9, length 1), then opt_endofopt.
        let body = [
            &[1u8, 0, 0, 0, 0, 0, 0, 0][..],
            &[9, 0, 1, 0, r, 0, 0, 0],
            &[0; 4],
        ]
        .concat();
        file.extend(block(1, &body));
    }
    let frame: Vec<u8> = (0u8..64).collect();
    let mut times = Vec::new();
    for (i, r) in resolutions.iter().enumerate() {
        let units: u128 = if r & 0x80 != 0 {
            1 << (r & 0x7f)
        } else {
            10u128.pow(u32::from(*r))
        };
        for (k, frac) in [0u128, 1, units / 3, units - 1].into_iter().enumerate() {
            let t = (1_700_000_000 + (i * 10 + k) as u128) * units + frac;
            times.push(t);
            let (high, low) = ((t >> 32) as u32, t as u32);
            // One packet of 61 bytes per interface, in a block whose length fields give the
            // unpadded length (93, not 96): Wireshark reads the padding as part of the block.
            let n = if k == 1 { 61 } else { 60 };
            let data = &frame[..n];
            let fields = |iface: &[u8]| -> Vec<u8> {
                [
                    iface,
                    &high.to_le_bytes(),
                    &low.to_le_bytes(),
                    &(n as u32).to_le_bytes(),
                    &(n as u32).to_le_bytes(),
                    &padded(data),
                ]
                .concat()
            };
            if k == 2 {
                // Obsolete Packet Block: u16 interface, u16 drops count, then as an EPB.
                let iface = [&(i as u16).to_le_bytes()[..], &[0, 0]].concat();
                file.extend(block(2, &fields(&iface)));
            } else {
                let mut b = block(6, &fields(&(i as u32).to_le_bytes()));
                if n % 4 != 0 {
                    let unpadded = (12 + 20 + n as u32).to_le_bytes();
                    let end = b.len();
                    b[4..8].copy_from_slice(&unpadded);
                    b[end - 4..].copy_from_slice(&unpadded);
                }
                file.extend(b);
            }
        }
    }
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("corners.pcapng");
    std::fs::write(&path, &file).unwrap();
    let shark = tshark_packets(&path);
    assert_eq!(shark.len(), times.len(), "tshark reads every packet");
    let (ours, err) = read_chunked(&Bytes::from(file), &[7, 64, 1000]);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(ours.len(), shark.len());
    for (a, b) in ours.iter().zip(&shark) {
        assert_eq!(a.ts.to_string(), b.time, "time");
        assert_eq!(&a.data[..], &b.data[..]);
    }
}
