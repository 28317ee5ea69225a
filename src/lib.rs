//! Docket: a gateway that cuts stored packet capture down to the packets an analyst asks for,
//! and streams them merged by time.
//!
//! Module map (see `docs/ARCHITECTURE.md` for the data flow):
//! - [`pcap`]: packets, the incremental pcap/pcapng reader, the pcap/pcapng writer;
//! - [`merge`]: the k-way timestamp merge (`mergecap` semantics) and the file merge behind
//!   `docket merge`.
//!
//! A request's path: query → job → upstreams → `pcap::Reader` per upstream → `merge::KWay` →
//! `pcap::Writer` → spool → clients.

#![warn(missing_docs)]

#[doc(hidden)]
pub mod fuzzing;
pub mod merge;
pub mod pcap;
