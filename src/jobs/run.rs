//! A job's run: wait for a merge slot, ask the upstreams, merge their answers into the output
//! format, hand whole records to the [`Sink`], end the job with its typed outcome.
//!
//! Invariants:
//! - Upstream messages are handled in one place ([`Run::on_message`]), in the declaration phase
//!   and in the merge alike.
//! - The output format is fixed only once every upstream has declared its link types (or
//!   ended).
//! - Encoded bytes go to the sink in whole records, every [`FLUSH_BYTES`] and whenever an
//!   upstream would make the merge wait, so a client piping into Wireshark sees packets as
//!   soon as they exist.
//! - Limits end the merge at a record boundary and mark the job truncated-by-limit.
//! - The feed is finished before the spool file (clients end before the fsync that only
//!   protects later hits); the job's end is published only after the file's fate is known,
//!   so a reader woken by the end finds the final file or none.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::job::{Job, Stop};
use super::state::{DirectReason, EndReason, Failure, Mode, State, UpstreamState, UpstreamStatus};
use crate::merge::KWay;
use crate::pcap::{LinkType, OutputFormat, Packet, Precision, Writer};
use crate::query::OutputKind;
use crate::spool::{Incomplete, Spool, SpoolWriter, WriteError, FS_WAIT};
use crate::upstream::{self, Limits, Message, Upstream, CHANNEL_BATCHES};

/// Encoded bytes at which a job hands its buffer to the spool: large enough that the writer
/// thread and the followers wake rarely (measured: 256 KiB cost a fifth of live throughput in
/// wakeups), small enough to stay flat in memory.
pub const FLUSH_BYTES: usize = 1024 * 1024;

/// What a run needs from the registry.
pub(super) struct Context {
    pub upstreams: Vec<Upstream>,
    pub spool: Option<Spool>,
    pub permits: Arc<Semaphore>,
    /// The configured global caps (0: none).
    pub limit_packets: u64,
    pub limit_bytes: u64,
    /// Free space the spool's file system keeps: a job that would eat into it stops writing.
    pub free_bytes: u64,
    /// Where jobs and upstream answers are counted.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// Bytes a job writes between two looks at the spool's free space.
const SPACE_CHECK_BYTES: u64 = 16 << 20;

/// Runs `job` over the upstreams `selected` (indexes into `cx.upstreams`) to its end.
pub(super) async fn run(cx: Arc<Context>, job: Arc<Job>, selected: Vec<usize>) {
    let permit: OwnedSemaphorePermit = tokio::select! {
        p = Arc::clone(&cx.permits).acquire_owned() => p.expect("the semaphore is never closed"),
        () = job.cancel_token().cancelled() => {
            let reason = match job.stopped() {
                Some(Stop::Shutdown) => (State::Failed, EndReason::Shutdown),
                _ => (State::Cancelled, EndReason::Cancelled),
            };
            job.feed().finish(Err(incomplete(&job)));
            job.end(reason.0, reason.1);
            cx.metrics.job_ended(reason.0, 0, 0);
            return;
        }
    };
    job.event("job", "starting requests", Some(State::Running));
    let started = std::time::Instant::now();
    let (state, reason) = Run::new(&cx, &job, &selected).go().await;
    drop(permit);
    let s = job.snapshot();
    // One line per job end, for operators.
    tracing::info!(
        query = %job.query.canonical(),
        user = job.user.as_deref().unwrap_or("-"),
        packets = s.packets,
        bytes = s.bytes,
        duration_ms = started.elapsed().as_millis() as u64,
        outcome = state.as_str(),
        reason = %reason,
        upstreams = %s.upstreams.iter().map(|u| format!("{}={:?}/{}", u.name, u.state, u.packets)).collect::<Vec<_>>().join(","),
        "job ended"
    );
    job.end(state, reason);
    cx.metrics.job_ended(state, s.packets, s.bytes);
}

fn incomplete(job: &Job) -> Incomplete {
    match job.stopped() {
        Some(Stop::Shutdown) => Incomplete::ShutDown,
        Some(Stop::ByUser) => Incomplete::Cancelled,
        None => Incomplete::Abandoned,
    }
}

/// One upstream's answer as the merge sees it.
struct Input {
    /// The upstream's name (for its metrics and log lines).
    name: String,
    /// When it was asked (its latencies count from here).
    asked: std::time::Instant,
    /// Whether its first packets (or its end) came yet.
    answered: bool,
    rx: mpsc::Receiver<Message>,
    pending: VecDeque<Packet>,
    declared: bool,
    ended: bool,
    failed: bool,
}

struct Run<'a> {
    cx: &'a Context,
    job: &'a Arc<Job>,
    selected: &'a [usize],
    inputs: Vec<Input>,
    declared: Vec<(LinkType, Precision)>,
    /// Packets written so far (kept when a cancel ends the merge).
    packets: u64,
    /// `format/pcap` met inputs of more than one link type: nothing was written.
    mixed: bool,
    /// Upstreams stop on this: a child of the job's cancel (a user or a shutdown), also
    /// cancelled alone when a limit ends the merge.
    stop: CancellationToken,
}

impl<'a> Run<'a> {
    fn new(cx: &'a Context, job: &'a Arc<Job>, selected: &'a [usize]) -> Run<'a> {
        Run {
            cx,
            job,
            selected,
            inputs: Vec::new(),
            declared: Vec::new(),
            packets: 0,
            mixed: false,
            stop: job.cancel_token().child_token(),
        }
    }

    /// Every message of upstream `k`, in either phase.
    fn on_message(&mut self, k: usize, msg: Option<Message>) {
        let input = &mut self.inputs[k];
        match msg {
            Some(Message::Declared(d)) => {
                input.declared = true;
                self.declared.extend(d);
            }
            Some(Message::Batch(b)) => {
                if !input.answered {
                    input.answered = true;
                    self.cx
                        .metrics
                        .upstream_first_byte(&input.name, input.asked.elapsed());
                }
                let bytes: u64 = b.iter().map(|p| p.data.len() as u64).sum();
                let n = b.len() as u64;
                input.pending.extend(b);
                // Per batch: a lock per packet would cost more than the merge itself.
                self.job.update(false, |s| {
                    let u = &mut s.upstreams[k];
                    u.packets += n;
                    u.bytes += bytes;
                });
            }
            Some(Message::Warning(w)) => {
                let name = self.job.with(|s| s.upstreams[k].name.clone());
                self.job.update(false, |s| {
                    let u = &mut s.upstreams[k];
                    if u.state != UpstreamState::Failed {
                        u.error = Some(Failure::Recorded(w.clone()));
                    }
                    u.warnings.push(w.clone());
                });
                self.job.event(&name, w, None);
            }
            Some(Message::Failed(e)) => self.fail(k, e),
            None => {
                input.ended = true;
                self.answered(k);
                self.job.update(false, |s| {
                    let u = &mut s.upstreams[k];
                    if u.state == UpstreamState::Requesting {
                        u.state = UpstreamState::Done;
                    }
                });
            }
        }
    }

    /// Upstream `k`'s answer ended (whole or failed): its latencies are observed.
    fn answered(&mut self, k: usize) {
        let input = &mut self.inputs[k];
        let took = input.asked.elapsed();
        if !input.answered {
            input.answered = true;
            self.cx.metrics.upstream_first_byte(&input.name, took);
        }
        self.cx.metrics.upstream_done(&input.name, took);
    }

    fn fail(&mut self, k: usize, e: upstream::Error) {
        let input = &mut self.inputs[k];
        input.failed = true;
        input.ended = true;
        // Closing its channel stops the upstream at its next send.
        input.rx.close();
        let name = input.name.clone();
        self.answered(k);
        if !matches!(e, upstream::Error::Gone) {
            self.cx.metrics.upstream_failed(&name, &e);
            // A sensor that fails a job is news for operators, not only for the analyst.
            tracing::warn!(upstream = %name, reason = e.kind(), error = %e, "upstream failed");
        }
        let e = Arc::new(e);
        self.job.update(false, |s| {
            let u: &mut UpstreamStatus = &mut s.upstreams[k];
            u.state = UpstreamState::Failed;
            u.error = Some(Failure::Upstream(Arc::clone(&e)));
        });
        self.job.event(&name, format!("failed: {e}"), None);
    }

    /// The next message of upstream `k`; `None` (with `cancelled`) if the job was cancelled.
    async fn recv(&mut self, k: usize) -> Result<Option<Message>, Cancelled> {
        tokio::select! {
            m = self.inputs[k].rx.recv() => Ok(m),
            () = self.job.cancel_token().cancelled() => Err(Cancelled),
        }
    }

    async fn go(mut self) -> (State, EndReason) {
        let q = Arc::new(self.job.query.clone());
        let limits = Limits {
            packets: min_limit(q.limit_packets, self.cx.limit_packets),
            bytes: min_limit(q.limit_bytes, self.cx.limit_bytes),
        };
        let mut sink = Sink::new(self.job, self.cx.spool.as_ref(), self.cx.free_bytes).await;
        for (k, &i) in self.selected.iter().enumerate() {
            let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
            let u = &self.cx.upstreams[i];
            u.query(&q, limits, tx, self.stop.child_token());
            self.cx.metrics.upstream_asked(u.name());
            self.job
                .update(false, |s| s.upstreams[k].state = UpstreamState::Requesting);
            self.job.event(u.name(), "requesting", None);
            self.inputs.push(Input {
                name: u.name().to_owned(),
                asked: std::time::Instant::now(),
                answered: false,
                rx,
                pending: VecDeque::new(),
                declared: false,
                ended: false,
                failed: false,
            });
        }
        // A cancel ends the merge early; the packets written so far still count.
        let _ = self.merge(&mut sink, limits).await;
        // Whatever ended the merge, the upstreams are no longer wanted.
        self.stop.cancel();
        let failed = self.inputs.iter().filter(|i| i.failed).count();
        let all_failed = failed > 0 && failed == self.inputs.len();
        let cancelled = self.job.stopped();
        let packets = self.packets;
        self.job.update(false, |s| {
            s.packets = packets;
            // A stopped job's upstreams did not answer in full.
            if cancelled.is_none() {
                for u in &mut s.upstreams {
                    if u.state == UpstreamState::Requesting {
                        u.state = UpstreamState::Done;
                    }
                }
            }
        });
        // Every byte is in the feed: clients end now, before the fsync that only protects
        // later hits.
        sink.feed_end(if cancelled.is_some() {
            Err(incomplete(self.job))
        } else if self.mixed {
            Err(Incomplete::MixedLinkTypes)
        } else if all_failed {
            Err(Incomplete::AllUpstreamsFailed)
        } else {
            Ok(())
        });
        // A cancelled job, or one whose every upstream failed, keeps no file: a header-only
        // capture must never become a hit.
        let kept = if cancelled.is_some() || all_failed || self.mixed {
            sink.abandon();
            None
        } else {
            sink.finish().await
        };
        match cancelled {
            Some(Stop::ByUser) => return (State::Cancelled, EndReason::Cancelled),
            Some(Stop::Shutdown) => return (State::Failed, EndReason::Shutdown),
            None => {}
        }
        if self.mixed {
            return (State::Failed, EndReason::MixedLinkTypes);
        }
        // A spool that failed (at the start, mid-job or at the end) kept nothing.
        let lost = match kept {
            Some(Err(e)) => Some(e.to_string()),
            _ => self.job.with(|s| match &s.mode {
                Mode::Direct(DirectReason::SpoolOff) | Mode::Spooled => None,
                Mode::Direct(why) => Some(why.to_string()),
            }),
        };
        if let Some(why) = lost {
            self.job.event(
                "job",
                format!("the capture was streamed to its clients but not kept ({why}); asking again runs the job again"),
                None,
            );
        }
        if all_failed {
            (State::Failed, EndReason::AllUpstreamsFailed)
        } else if failed > 0 {
            (
                State::Partial,
                EndReason::SomeUpstreamsFailed {
                    failed,
                    of: self.inputs.len(),
                },
            )
        } else if packets == 0 {
            if !self.job.query.ports.is_empty() {
                // A Kibana "Query PCAP" link of an ICMP event carries Suricata's type and code
                // as ports: say why it may have found nothing.
                self.job.event(
                    "job",
                    "no packets: if this query came from an ICMP event, its ports are the ICMP \
                     type and code (ICMP has no ports) — ask again without the port clauses",
                    None,
                );
            }
            (State::Completed, EndReason::NoPackets)
        } else {
            (State::Completed, EndReason::Finished)
        }
    }

    /// The merge. Returns the packets written (`Err` when cancelled).
    async fn merge(&mut self, sink: &mut Sink<'_>, limits: Limits) -> Result<u64, Cancelled> {
        // Declarations first: they decide the output format.
        for k in 0..self.inputs.len() {
            while !self.inputs[k].declared && !self.inputs[k].ended {
                let m = self.recv(k).await?;
                self.on_message(k, m);
            }
        }
        // Every upstream failed before it declared anything: no capture at all (not even a
        // header), so that clients holding their response head answer with the failure.
        if self.inputs.iter().all(|i| i.failed) {
            return Ok(0);
        }
        let format = match self.job.query.output {
            OutputKind::Pcapng => OutputFormat::Pcapng,
            OutputKind::Auto => OutputFormat::choose(&self.declared),
            OutputKind::Pcap => match OutputFormat::choose(&self.declared) {
                OutputFormat::Pcapng => {
                    // Refused before a byte, so the clients' heads say so (409).
                    let types: Vec<String> =
                        self.declared.iter().map(|(lt, _)| lt.to_string()).collect();
                    self.job.event(
                        "job",
                        format!("classic pcap cannot hold link types {}", types.join(", ")),
                        None,
                    );
                    self.mixed = true;
                    self.stop.cancel();
                    return Ok(0);
                }
                pcap => pcap,
            },
        };
        let mut writer = Writer::new(format);
        let mut buf = BytesMut::with_capacity(FLUSH_BYTES * 2);
        writer.write_header(&mut buf);
        for &(lt, _) in &self.declared {
            writer.declare(&mut buf, lt);
        }
        let mut kway = KWay::new(self.inputs.len());
        let (mut packets, mut written) = (0u64, buf.len() as u64);
        loop {
            for k in 0..self.inputs.len() {
                while kway.needs(k) {
                    if let Some(p) = self.inputs[k].pending.pop_front() {
                        kway.push(k, p);
                        continue;
                    }
                    if self.inputs[k].ended {
                        kway.end(k);
                        continue;
                    }
                    let m = match self.inputs[k].rx.try_recv() {
                        Ok(m) => Some(m),
                        Err(mpsc::error::TryRecvError::Disconnected) => None,
                        Err(mpsc::error::TryRecvError::Empty) => {
                            // About to wait: hand what is encoded to the sink first, so
                            // clients see packets while a slow upstream thinks (and
                            // `/status` counts them).
                            self.job.update(false, |s| s.packets = packets);
                            sink.emit(buf.split().freeze()).await;
                            self.recv(k).await?
                        }
                    };
                    self.on_message(k, m);
                }
            }
            let Some((k, p)) = kway.pop() else { break };
            if self.job.cancel_token().is_cancelled() {
                return Err(Cancelled);
            }
            let before = buf.len();
            if let Err(e) = writer.write(&mut buf, &p) {
                self.fail(k, upstream::Error::Unwritable(e));
                kway.end(k);
                continue;
            }
            // Limits count what was really encoded (a pcapng record is larger than a pcap one).
            let size = (buf.len() - before) as u64;
            if limits.packets.is_some_and(|l| packets >= l)
                || limits.bytes.is_some_and(|l| written + size > l)
            {
                buf.truncate(before);
                self.job.update(false, |s| s.truncated_by_limit = true);
                self.job.event(
                    "job",
                    "a result limit was reached; the capture ends here",
                    None,
                );
                break;
            }
            packets += 1;
            self.packets = packets;
            written += size;
            if buf.len() >= FLUSH_BYTES {
                self.job.update(false, |s| s.packets = packets);
                sink.emit(buf.split().freeze()).await;
            }
        }
        sink.emit(buf.split().freeze()).await;
        Ok(packets)
    }
}

/// The job was cancelled (by a user or a shutdown) during the merge.
struct Cancelled;

/// Where a job's encoded bytes go: it owns the spool writer and the job's feed, so the writer
/// tells the feed what is durable directly. A spool that fails mid-job (a full disk) is
/// dropped — which deletes its part file — and the job goes on streaming to the clients
/// attached, paced by the slowest.
struct Sink<'a> {
    job: &'a Job,
    writer: Option<SpoolWriter>,
    /// The spool and the free space it must keep, for the checks while writing.
    space: Option<(&'a Spool, u64)>,
    /// Bytes written since the last look at the free space.
    since_check: u64,
}

impl<'a> Sink<'a> {
    /// Creates the job's spool file off the async threads (a frozen or hung spool costs the
    /// job its file, never a worker); without one the job streams to its clients.
    async fn new(job: &'a Job, spool: Option<&'a Spool>, free_bytes: u64) -> Sink<'a> {
        let created = match spool {
            Some(sp) => {
                let (id, feed) = (job.id, Arc::clone(job.feed()));
                // A writer created after the wait is dropped with the closure's result, which
                // removes its part file.
                Some(
                    sp.off_thread(crate::spool::Lane::Write, move |sp| sp.create(&id, feed))
                        .await
                        .and_then(|r| r),
                )
            }
            None => None,
        };
        let writer = created.and_then(|c| match c {
            Ok(w) => {
                let part = w.part_path().to_owned();
                job.update(false, |s| s.part = Some(part));
                Some(w)
            }
            Err(e) => {
                let why = DirectReason::CannotCreate(Arc::new(e));
                job.feed().set_direct();
                job.event(
                    "job",
                    format!("{why}: streaming to the clients attached"),
                    None,
                );
                job.update(true, |s| s.mode = Mode::Direct(why));
                None
            }
        });
        Sink {
            job,
            writer,
            space: spool.map(|sp| (sp, free_bytes)),
            since_check: 0,
        }
    }

    /// Stops writing the spool file (the thread removes it) and streams on to the clients.
    fn go_direct(&mut self, why: DirectReason) {
        let what = format!("{why}: streaming to the clients attached; the result will not be kept");
        self.lose_file(why);
        self.job.event("job", what, None);
    }

    /// The job has no file any more: the feed goes direct and the state says why.
    fn lose_file(&mut self, why: DirectReason) {
        self.writer = None;
        self.job.feed().set_direct();
        self.job.update(true, |s| {
            s.mode = Mode::Direct(why);
            s.part = None;
        });
    }

    async fn emit(&mut self, chunk: Bytes) {
        if chunk.is_empty() {
            return;
        }
        // `/status` shows the capture growing.
        self.job.update(false, |s| s.bytes += chunk.len() as u64);
        if let Some(w) = &mut self.writer {
            // A writer that takes nothing for `FS_WAIT` sits on a stalled disk: the job goes
            // on without the file rather than wait for the disk.
            match tokio::time::timeout(FS_WAIT, w.write(chunk.clone())).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => self.go_direct(DirectReason::Failed(Arc::new(e))),
                Err(_) => {
                    self.go_direct(DirectReason::Failed(Arc::new(WriteError::Stalled(FS_WAIT))))
                }
            }
        }
        // Free space is checked while writing, not only at admission: a capture far larger
        // than expected (a sparse file, a huge window) stops at the floor, not at a full disk.
        self.since_check += chunk.len() as u64;
        if self.writer.is_some() && self.since_check >= SPACE_CHECK_BYTES {
            self.since_check = 0;
            if let Some((spool, floor)) = self.space {
                let free = spool.free_bytes();
                if free < floor {
                    self.go_direct(DirectReason::LowSpace { free, floor });
                }
            }
        }
        tokio::select! {
            () = self.job.feed().push(chunk) => {}
            () = self.job.cancel_token().cancelled() => {}
        }
    }

    fn feed_end(&self, outcome: Result<(), Incomplete>) {
        self.job.feed().finish(outcome);
    }

    /// Drops the writer: the thread removes the part file.
    fn abandon(&mut self) {
        self.writer = None;
    }

    /// Completes the file; `None` when there was none.
    async fn finish(&mut self) -> Option<Result<u64, Arc<crate::spool::WriteError>>> {
        let w = self.writer.take()?;
        // Given up when the disk stalls past the wait: then no file is left in place.
        let r = w.finish_within(FS_WAIT).await.map_err(Arc::new);
        if let Err(e) = &r {
            self.lose_file(DirectReason::Failed(Arc::clone(e)));
        }
        Some(r)
    }
}

fn min_limit(request: Option<u64>, global: u64) -> Option<u64> {
    match (request, global) {
        (Some(r), 0) => Some(r),
        (Some(r), g) => Some(r.min(g)),
        (None, 0) => None,
        (None, g) => Some(g),
    }
}
