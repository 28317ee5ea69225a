//! The k-way timestamp merge of packet streams, with `mergecap`'s semantics.
//!
//! [`KWay`] is a push/pull state machine rather than an iterator adapter, so the same code
//! drives synchronous file merges ([`files`]) and asynchronous upstream streams: the caller
//! fills every input that [`KWay::needs`] a head packet (or [`KWay::end`]s it), then
//! [`KWay::pop`]s.
//!
//! Invariants:
//! - at most one packet is held per input (its head);
//! - `pop` answers only when every live input has a head or has ended — a packet is never
//!   emitted while an input that might hold an earlier one is still silent;
//! - the smallest head timestamp goes first and each input's own order is kept even where it
//!   steps back in time, exactly as `mergecap` does, which makes it the oracle of the tests;
//! - ties go to the **higher** input index. That is what `mergecap` really does (Wireshark's
//!   `merge.c` scans inputs in order and its `is_earlier()` answers true on equal times, so the
//!   last input with the smallest time wins); the issue asked for "lower index, i.e. mergecap
//!   semantics", and mergecap is the oracle, so mergecap's rule it is.
//!
//! An input that fails is simply ended by the caller: the others go on, and the caller decides
//! what a failed input means.

pub mod files;

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::pcap::{Packet, Timestamp};

/// The merge state. See the module documentation.
#[derive(Debug)]
pub struct KWay {
    /// The head packet of each input, if it has one.
    heads: Vec<Option<Packet>>,
    /// Inputs that have not ended.
    live: Vec<bool>,
    /// One entry per held head, smallest timestamp first, then highest input index.
    heap: BinaryHeap<Reverse<(Timestamp, Reverse<usize>)>>,
    /// Live inputs without a head: `pop` waits while this is non-zero.
    waiting: usize,
}

impl KWay {
    /// A merge of `n` inputs, all live and waiting for their first packet.
    pub fn new(n: usize) -> KWay {
        KWay {
            heads: (0..n).map(|_| None).collect(),
            live: vec![true; n],
            heap: BinaryHeap::with_capacity(n),
            waiting: n,
        }
    }

    /// Number of inputs.
    pub fn len(&self) -> usize {
        self.heads.len()
    }

    /// True for a merge of no inputs.
    pub fn is_empty(&self) -> bool {
        self.heads.is_empty()
    }

    /// True when input `i` is live and has no head: give it a packet or end it.
    pub fn needs(&self, i: usize) -> bool {
        self.live[i] && self.heads[i].is_none()
    }

    /// True when `pop` would answer: no live input is waiting.
    pub fn ready(&self) -> bool {
        self.waiting == 0
    }

    /// Gives input `i` its next packet.
    ///
    /// # Panics
    /// If input `i` does not [`need`](KWay::needs) a packet: that would break the
    /// one-packet-per-input bound, a bug in the caller.
    pub fn push(&mut self, i: usize, p: Packet) {
        assert!(self.needs(i), "input {i} already has a head or has ended");
        self.heap.push(Reverse((p.ts, Reverse(i))));
        self.heads[i] = Some(p);
        self.waiting -= 1;
    }

    /// Ends input `i` (exhausted or failed). Its head, if it holds one, is still merged.
    pub fn end(&mut self, i: usize) {
        if self.live[i] {
            self.live[i] = false;
            if self.heads[i].is_none() {
                self.waiting -= 1;
            }
        }
    }

    /// The next packet in merge order and its input index, once every live input has a head
    /// or has ended; `None` while some input is awaited or when all is merged.
    pub fn pop(&mut self) -> Option<(usize, Packet)> {
        if self.waiting != 0 {
            return None;
        }
        let Reverse((_, Reverse(i))) = self.heap.pop()?;
        let p = self.heads[i].take().expect("heap entries have heads");
        if self.live[i] {
            self.waiting += 1;
        }
        Some((i, p))
    }

    /// True when every input has ended and every packet has been popped.
    pub fn is_done(&self) -> bool {
        self.heap.is_empty() && self.live.iter().all(|l| !l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Structured inputs against a reference sort (also the `merge` fuzz target).
        #[test]
        fn sorted_inputs_give_the_reference_sort(
            inputs in prop::collection::vec(prop::collection::vec(0u8..6, 0..20), 0..8)
        ) {
            crate::fuzzing::merge_against_sort(inputs);
        }

        /// Unsorted inputs: all packets come out, each input in its own order.
        #[test]
        fn unsorted_inputs_keep_their_own_order(
            inputs in prop::collection::vec(prop::collection::vec(-5i128..5, 0..20), 0..8)
        ) {
            let mut k = KWay::new(inputs.len());
            let mut next = vec![0usize; inputs.len()];
            let mut out: Vec<(usize, i128)> = Vec::new();
            loop {
                for (i, ts) in inputs.iter().enumerate() {
                    if k.needs(i) {
                        match ts.get(next[i]) {
                            Some(&t) => {
                                k.push(i, packet(t));
                                next[i] += 1;
                            }
                            None => k.end(i),
                        }
                    }
                }
                let Some((i, p)) = k.pop() else { break };
                out.push((i, p.ts.0));
            }
            prop_assert!(k.is_done());
            for (i, ts) in inputs.iter().enumerate() {
                let mine: Vec<i128> = out.iter().filter(|o| o.0 == i).map(|o| o.1).collect();
                prop_assert_eq!(&mine, ts);
            }
        }
    }

    fn packet(ts: i128) -> Packet {
        Packet {
            ts: Timestamp(ts),
            link_type: 1,
            orig_len: 0,
            data: bytes::Bytes::new(),
        }
    }

    #[test]
    fn pop_waits_for_every_live_input() {
        let mut k = KWay::new(2);
        k.push(0, packet(5));
        assert!(
            k.pop().is_none(),
            "input 1 may still hold an earlier packet"
        );
        k.push(1, packet(9));
        assert_eq!(k.pop().map(|(i, _)| i), Some(0));
        assert!(k.pop().is_none(), "input 0 must be refilled or ended first");
        k.end(0);
        assert_eq!(k.pop().map(|(i, _)| i), Some(1));
        k.end(1);
        assert!(k.pop().is_none() && k.is_done());
    }
}
