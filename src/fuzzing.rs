//! The logic of the fuzz targets, kept in the library so that the targets stay a few lines and
//! every input a fuzzer finds can be replayed as a unit test. Each function panics exactly when
//! a property is broken.

use bytes::Bytes;
use std::cmp::Reverse;

use crate::merge::KWay;
use crate::pcap::{Next, Packet, Reader, Timestamp, MAX_BLOCK};

/// The reader on arbitrary bytes in arbitrary chunking: the first byte picks the chunk sizes.
/// Must end (packets then at most one typed error) without panicking, buffer no more than it
/// was given plus one bounded record, and agree with a read of the same bytes in one piece.
pub fn reader(input: &[u8]) {
    let Some((&seed, data)) = input.split_first() else {
        return;
    };
    let data = Bytes::copy_from_slice(data);
    let whole = read(&data, &[data.len().max(1)]);
    let sizes = [
        1 + seed as usize % 7,
        1 + seed as usize * 13,
        3,
        1 + seed as usize / 3,
    ];
    let chunked = read(&data, &sizes);
    assert_eq!(whole.0, chunked.0, "packets differ by chunking");
    assert_eq!(
        whole.1.map(|e| std::mem::discriminant(&e)),
        chunked.1.map(|e| std::mem::discriminant(&e)),
        "outcome differs by chunking"
    );
}

fn read(data: &Bytes, sizes: &[usize]) -> (Vec<Packet>, Option<crate::pcap::Error>) {
    let mut r = Reader::new();
    let (mut pos, mut k, mut out) = (0, 0, Vec::new());
    // Every step either consumes input, pushes input, or ends: bounded by the input length.
    for _ in 0..=(2 * data.len() + 4) {
        match r.next_packet() {
            Ok(Next::Packet(p)) => out.push(p),
            Ok(Next::End) => return (out, None),
            Err(e) => return (out, Some(e)),
            Ok(Next::NeedMore) => {
                if pos == data.len() {
                    r.finish();
                } else {
                    let n = sizes[k % sizes.len()].clamp(1, data.len() - pos);
                    k += 1;
                    r.push(data.slice(pos..pos + n));
                    pos += n;
                }
            }
        }
        assert!(r.buffered() <= data.len() + MAX_BLOCK as usize);
    }
    panic!("the reader did not finish");
}

/// The merge on structured input: each inner vector is one input's timestamps (sorted here),
/// checked against a reference sort: time ascending, ties to the higher input index (as
/// mergecap), then input order.
pub fn merge_against_sort(mut inputs: Vec<Vec<u8>>) {
    inputs.truncate(64);
    for v in &mut inputs {
        v.sort();
    }
    let mut k = KWay::new(inputs.len());
    let mut next = vec![0usize; inputs.len()];
    let mut out = Vec::new();
    loop {
        for (i, ts) in inputs.iter().enumerate() {
            if k.needs(i) {
                match ts.get(next[i]) {
                    Some(&t) => {
                        let tag = Bytes::from(vec![i as u8, next[i] as u8, (next[i] >> 8) as u8]);
                        k.push(
                            i,
                            Packet {
                                ts: Timestamp(t as i128),
                                link_type: 1,
                                orig_len: 3,
                                data: tag,
                            },
                        );
                        next[i] += 1;
                    }
                    None => k.end(i),
                }
            }
        }
        match k.pop() {
            Some((i, p)) => {
                let seq = p.data[1] as usize | (p.data[2] as usize) << 8;
                assert_eq!(p.data[0] as usize, i);
                out.push((i, seq, p.ts.0 as u8));
            }
            None => break,
        }
    }
    assert!(k.is_done());
    let mut want: Vec<(usize, usize, u8)> = inputs
        .iter()
        .enumerate()
        .flat_map(|(i, v)| v.iter().enumerate().map(move |(s, &t)| (i, s, t)))
        .collect();
    want.sort_by_key(|&(i, s, t)| (t, Reverse(i), s));
    assert_eq!(out, want);
}

/// The query grammar on arbitrary paths: parsing never panics; whatever parses renders back
/// (`Query::to_path`) into a path that parses to the same canonical form and job id.
pub fn query_roundtrip(input: &[u8]) {
    use crate::query::{parse_path, QueryConfig};
    let Ok(path) = std::str::from_utf8(input) else {
        return;
    };
    let now = Timestamp(1_700_000_000 * crate::pcap::NANOS_PER_SEC);
    let cfg = QueryConfig::default();
    let Ok(q) = parse_path(path, now, &cfg) else {
        return;
    };
    let again = parse_path(&q.to_path(), now, &cfg)
        .unwrap_or_else(|e| panic!("{path:?} rendered as {:?} does not parse: {e}", q.to_path()));
    assert_eq!(q.canonical(), again.canonical(), "{path:?}");
    assert_eq!(q.id(), again.id());
    let _ = (q.stenographer(), q.bpf_filter());
}
