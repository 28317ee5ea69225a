//! Docket: a gateway that cuts stored packet capture down to the packets an analyst asks for,
//! and streams them merged by time.
//!
//! Module map (see `docs/ARCHITECTURE.md` for the data flow):
//! - [`pcap`]: packets, the incremental pcap/pcapng reader, the pcap/pcapng writer, BPF;
//! - [`merge`]: the k-way timestamp merge (`mergecap` semantics) and the file merge behind
//!   `docket merge`;
//! - [`query`]: request grammar (URL, JSON, form), canonical form, job id, renderings;
//! - [`upstream`]: where packets come from (local capture directories);
//! - [`index`]: per-capture-file indexes (time slices, key postings) built from the
//!   structured clauses' own keys;
//! - [`jobs`]: the registry (dedup, join in flight) and each job's merge loop and state;
//! - [`spool`]: each job's file, written once and followed by every reader;
//! - [`mapped`]: whole files mapped as `Bytes` (one place, one safety contract);
//! - [`http`]: routes under the prefix; [`server`]: wiring; [`config`]: the TOML file.
//!
//! A request's path: query → job → upstreams → `pcap::Reader` per upstream → `merge::KWay` →
//! `pcap::Writer` → spool → clients.

#![warn(missing_docs)]

pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod index;
pub mod jobs;
pub mod mapped;
pub mod merge;
pub mod metrics;
pub mod notify;
pub mod pcap;
pub mod query;
pub mod server;
pub mod spool;
pub mod upstream;
