//! Jobs: one per distinct query ([`JobId`]), each merging its upstreams into its spool file.
//!
//! **Registry.** [`Registry::get_or_start`] deduplicates: a request whose job is queued, running
//! or complete joins it (and reads the capture from byte 0 via the spool); a failed or cancelled
//! job never poisons its id — the next identical request starts afresh; a complete file left in
//! the spool by an earlier run is served as a completed job. At most `max_jobs` jobs merge at
//! once (a semaphore); up to `max_queued` more wait; beyond that, requests are refused.
//!
//! **A job's life.** Queued → Running → Completed | Partial (some upstream failed; each says
//! why) | Failed (nothing usable: every upstream failed, or the spool failed) | Cancelled.
//! Every change is an [`Event`] with a timestamp; each upstream has its own progress (state,
//! packets, bytes, error).
//!
//! **The merge loop.** Each upstream answers on a bounded channel ([`crate::upstream`]). The
//! loop waits until every upstream has declared its link types (that fixes the output format,
//! by the writer's rule), then merges with [`KWay`], encodes records into a buffer and hands it
//! to the spool every [`FLUSH_BYTES`] — and also whenever an upstream would make it wait, so a
//! client piping into Wireshark sees packets as soon as they exist. Limits (the request's and
//! the global caps) end the merge cleanly at a record boundary and mark the job
//! truncated-by-limit.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use serde::Serialize;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::merge::KWay;
use crate::pcap::{OutputFormat, Packet, Writer};
use crate::query::{JobId, OutputKind, Query};
use crate::spool::{Feed, Progress, Spool, SpoolWriter, Stage};
use crate::upstream::{
    self, local::LocalUpstream, stenographer::Sensor, Limits, Message, Upstream, CHANNEL_BATCHES,
};

/// Encoded bytes at which a job hands its buffer to the spool: large enough that the writer
/// thread and the followers wake rarely (measured: 256 KiB cost a fifth of live throughput in
/// wakeups), small enough to stay flat in memory.
pub const FLUSH_BYTES: usize = 1024 * 1024;

/// Why a job cannot be started.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spool's disk is below `free_bytes`.
    #[error("low on spool space: {free} bytes free, {needed} required to start a job")]
    InsufficientStorage {
        /// Free bytes.
        free: u64,
        /// The configured minimum.
        needed: u64,
    },
    /// Too many jobs are waiting.
    #[error("too many jobs queued ({0}); try again later")]
    Busy(usize),
    /// The request names sensors that do not exist.
    #[error("unknown sensor {0:?}")]
    UnknownSensor(String),
}

/// A job's overall state (Docket-py's strings where it had one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum State {
    /// Waiting for a merge slot.
    Queued,
    /// Merging.
    Running,
    /// Every upstream answered; the capture is complete.
    Completed,
    /// Some upstreams failed; the capture holds the others' packets.
    Partial,
    /// No usable capture.
    Failed,
    /// Cancelled by a user.
    Cancelled,
}

impl State {
    /// Final states never change.
    pub fn is_final(self) -> bool {
        !matches!(self, State::Queued | State::Running)
    }
}

/// One entry of a job's history.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// When (RFC 3339, UTC).
    pub datetime: String,
    /// Who: "job" or an upstream's name.
    pub name: String,
    /// What happened.
    pub msg: String,
    /// The job's state after it.
    pub state: State,
}

/// One upstream's part in a job.
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamProgress {
    /// Sensor name.
    pub name: String,
    /// "requesting", "done", "failed".
    pub state: &'static str,
    /// Packets delivered into the merge.
    pub packets: u64,
    /// Captured bytes of those packets.
    pub bytes: u64,
    /// Why it failed, or warnings.
    pub error: Option<String>,
}

/// Everything `/status` shows of a job.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Overall state.
    pub state: State,
    /// History.
    pub events: Vec<Event>,
    /// Per upstream.
    pub upstreams: Vec<UpstreamProgress>,
    /// Packets written.
    pub packets: u64,
    /// Bytes of capture written (file size).
    pub bytes: u64,
    /// A limit ended the merge early.
    pub truncated_by_limit: bool,
}

/// One job.
#[derive(Debug)]
pub struct Job {
    /// Its id.
    pub id: JobId,
    /// Its query.
    pub query: Query,
    /// When it was requested.
    pub created: SystemTime,
    status: Mutex<Status>,
    /// The spool file's progress; the job owns it so that it outlives the spool writer.
    progress: Arc<watch::Sender<Progress>>,
    /// The part file path while running.
    part: Mutex<Option<std::path::PathBuf>>,
    /// The capture's most recent chunks, shared by every client (see [`Feed`]).
    feed: Arc<Feed>,
    cancel: CancellationToken,
}

fn now_rfc3339() -> String {
    crate::query::rfc3339(time::OffsetDateTime::now_utc().unix_timestamp_nanos())
}

impl Job {
    /// A snapshot of its status.
    pub fn status(&self) -> Status {
        self.status.lock().expect("status lock").clone()
    }

    /// Its state.
    pub fn state(&self) -> State {
        self.status.lock().expect("status lock").state
    }

    /// Progress of its spool file.
    pub fn progress(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    /// The capture as it is produced: what every client follows.
    pub fn feed(&self) -> &Arc<Feed> {
        &self.feed
    }

    /// The part file being written, while the job runs.
    pub fn part_path(&self) -> Option<std::path::PathBuf> {
        self.part.lock().expect("part lock").clone()
    }

    /// Asks the job to stop; it ends `Cancelled`.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    fn event(&self, name: &str, msg: impl Into<String>, state: Option<State>) {
        let mut s = self.status.lock().expect("status lock");
        if let Some(st) = state {
            if !s.state.is_final() {
                s.state = st;
            }
        }
        let msg = msg.into();
        tracing::info!(job = %self.id, who = name, state = ?s.state, "{msg}");
        let state = s.state;
        s.events.push(Event {
            datetime: now_rfc3339(),
            name: name.into(),
            msg,
            state,
        });
    }

    fn upstream<R>(&self, i: usize, f: impl FnOnce(&mut UpstreamProgress) -> R) -> R {
        f(&mut self.status.lock().expect("status lock").upstreams[i])
    }
}

/// The job registry. See the module documentation.
#[derive(Debug)]
pub struct Registry {
    config: Config,
    spool: Spool,
    upstreams: Vec<Upstream>,
    jobs: Mutex<HashMap<JobId, Arc<Job>>>,
    permits: Arc<Semaphore>,
}

impl Registry {
    /// A registry over the configured upstreams (local directories, then sensors) and spool.
    ///
    /// # Errors
    /// A sensor's TLS material cannot be used.
    pub fn new(config: Config, spool: Spool) -> Result<Registry, upstream::sensor_tls::Error> {
        let mut upstreams: Vec<Upstream> = config
            .local
            .iter()
            .map(|d| Upstream::Local(Arc::new(LocalUpstream::new(d.name.clone(), d.path.clone()))))
            .collect();
        for s in &config.stenographer {
            upstreams.push(Upstream::Stenographer(Arc::new(Sensor::new(s)?)));
        }
        Ok(Registry {
            permits: Arc::new(Semaphore::new(config.max_jobs)),
            config,
            spool,
            upstreams,
            jobs: Mutex::new(HashMap::new()),
        })
    }

    /// The upstreams, in configuration order.
    pub fn upstreams(&self) -> &[Upstream] {
        &self.upstreams
    }

    /// The spool.
    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    /// The job of an id, if known (in memory, or a complete file in the spool).
    pub fn get(&self, id: &JobId) -> Option<Arc<Job>> {
        self.jobs.lock().expect("jobs lock").get(id).cloned()
    }

    /// All jobs in memory, oldest first.
    pub fn all(&self) -> Vec<Arc<Job>> {
        let mut v: Vec<_> = self
            .jobs
            .lock()
            .expect("jobs lock")
            .values()
            .cloned()
            .collect();
        v.sort_by_key(|j| j.created);
        v
    }

    /// Removes a job: cancels it if running, deletes its complete file.
    pub fn remove(&self, id: &JobId) -> bool {
        let job = self.jobs.lock().expect("jobs lock").remove(id);
        let file = std::fs::remove_file(self.spool.final_path(&id.to_string())).is_ok();
        if let Some(j) = &job {
            j.cancel();
        }
        job.is_some() || file
    }

    /// Forgets jobs whose files cleanup deleted, and failed or cancelled jobs older than
    /// `keep_failed` (their history stays visible that long; their ids restart anyway).
    pub fn forget(&self, ids: &[String], keep_failed: Duration) {
        let now = SystemTime::now();
        let mut jobs = self.jobs.lock().expect("jobs lock");
        jobs.retain(|id, j| {
            let state = j.state();
            let deleted = state.is_final() && ids.contains(&id.to_string());
            let stale = matches!(state, State::Failed | State::Cancelled)
                && now.duration_since(j.created).unwrap_or_default() > keep_failed;
            !(deleted || stale)
        });
    }

    /// The job for `query`: joins an existing one or starts a new one.
    ///
    /// # Errors
    /// Admission control (spool space, queue length) or an unknown sensor.
    pub fn get_or_start(self: &Arc<Self>, query: Query) -> Result<Arc<Job>, Error> {
        let id = query.id();
        let mut jobs = self.jobs.lock().expect("jobs lock");
        if let Some(j) = jobs.get(&id) {
            match j.state() {
                // A job streaming without a spool whose first bytes have left its feed cannot
                // serve a newcomer from byte 0: the newcomer gets a job of its own (the old one
                // goes on for its clients).
                State::Queued | State::Running if j.feed.replayable() => return Ok(Arc::clone(j)),
                // A hit refreshes the file's age for cleanup; a file cleanup has just deleted
                // (the job not yet forgotten) means the job must run again. A partial result
                // is never a hit: asking again asks the failed upstreams again.
                State::Completed if self.spool.lookup(&id.to_string()).is_some() => {
                    return Ok(Arc::clone(j))
                }
                _ => {}
            }
        }
        let selected = self.select(&query)?;
        // A complete file from an earlier run of this process (or before a restart).
        let earlier = match self.spool.is_partial(&id.to_string()) {
            true => None,
            false => self.spool.lookup(&id.to_string()),
        };
        if let Some((_, len)) = earlier {
            let job = Arc::new(self.new_job(id, query, &selected));
            {
                let mut s = job.status.lock().expect("status lock");
                s.bytes = len;
                s.state = State::Completed;
            }
            job.event("job", "served from the spool", None);
            job.progress.send_replace(Progress {
                len,
                sealed: true,
                stage: Stage::Complete,
            });
            jobs.insert(id, Arc::clone(&job));
            return Ok(job);
        }
        let free = self.spool.free_bytes();
        if self.config.spool && free < self.config.free_bytes {
            return Err(Error::InsufficientStorage {
                free,
                needed: self.config.free_bytes,
            });
        }
        // Jobs still `Queued` may be about to take a free permit: only those beyond the free
        // permits really wait.
        let waiting = jobs.values().filter(|j| j.state() == State::Queued).count();
        if waiting >= self.config.max_queued + self.permits.available_permits() {
            return Err(Error::Busy(waiting));
        }
        let job = Arc::new(self.new_job(id, query, &selected));
        job.event("job", "created", Some(State::Queued));
        jobs.insert(id, Arc::clone(&job));
        drop(jobs);
        let me = Arc::clone(self);
        let j = Arc::clone(&job);
        tokio::spawn(async move { me.run(j, selected).await });
        Ok(job)
    }

    fn select(&self, query: &Query) -> Result<Vec<usize>, Error> {
        for s in &query.sensors {
            if !self.upstreams.iter().any(|u| u.name() == s) {
                return Err(Error::UnknownSensor(s.clone()));
            }
        }
        Ok((0..self.upstreams.len())
            .filter(|&i| {
                query.sensors.is_empty()
                    || query.sensors.iter().any(|s| s == self.upstreams[i].name())
            })
            .collect())
    }

    fn new_job(&self, id: JobId, query: Query, selected: &[usize]) -> Job {
        let (tx, _) = watch::channel(Progress {
            len: 0,
            sealed: false,
            stage: Stage::Writing,
        });
        Job {
            id,
            query,
            created: SystemTime::now(),
            status: Mutex::new(Status {
                state: State::Queued,
                events: Vec::new(),
                upstreams: selected
                    .iter()
                    .map(|&i| UpstreamProgress {
                        name: self.upstreams[i].name().to_owned(),
                        state: "queued",
                        packets: 0,
                        bytes: 0,
                        error: None,
                    })
                    .collect(),
                packets: 0,
                bytes: 0,
                truncated_by_limit: false,
            }),
            progress: Arc::new(tx),
            part: Mutex::new(None),
            feed: {
                let feed = Feed::new();
                if !self.config.spool {
                    feed.set_direct();
                }
                feed
            },
            cancel: CancellationToken::new(),
        }
    }

    async fn run(self: Arc<Self>, job: Arc<Job>, selected: Vec<usize>) {
        let permit = tokio::select! {
            p = Arc::clone(&self.permits).acquire_owned() => p.expect("semaphore open"),
            _ = job.cancel.cancelled() => {
                self.end(&job, State::Cancelled, "cancelled while queued", Progress { len: 0, sealed: false, stage: Stage::Failed("cancelled".into()) });
                return;
            }
        };
        job.event("job", "starting requests", Some(State::Running));
        let outcome = self.merge(&job, &selected).await;
        drop(permit);
        match outcome {
            Ok((final_progress, failed)) => {
                let s = job.status();
                if !job.cancel.is_cancelled() && final_progress.stage != Stage::Complete {
                    let why = match &final_progress.stage {
                        Stage::Failed(why) => why.clone(),
                        _ => "unknown".into(),
                    };
                    job.event(
                        "job",
                        format!("the capture was streamed to its clients but not kept ({why}); asking again runs the job again"),
                        None,
                    );
                }
                let (state, msg) = if job.cancel.is_cancelled() {
                    (State::Cancelled, "cancelled".to_string())
                } else if failed == selected.len() && failed > 0 {
                    (State::Failed, "every upstream failed".to_string())
                } else if failed > 0 {
                    (
                        State::Partial,
                        format!("{failed} of {} upstreams failed", selected.len()),
                    )
                } else if s.packets == 0 {
                    (
                        State::Completed,
                        "Completed. no packets returned".to_string(),
                    )
                } else {
                    (State::Completed, "finished".to_string())
                };
                self.end(&job, state, &msg, final_progress);
            }
            Err(why) => self.end(
                &job,
                State::Failed,
                &why,
                Progress {
                    len: 0,
                    sealed: false,
                    stage: Stage::Failed(why.clone()),
                },
            ),
        }
    }

    fn end(&self, job: &Job, state: State, msg: &str, progress: Progress) {
        job.event("job", msg, Some(state));
        // A job that got as far as its merge has already ended its feed; this is for the rest.
        job.feed.finish(Err(msg.to_owned()));
        *job.part.lock().expect("part lock") = None;
        // Only a job that never got as far as its spool writer publishes here; otherwise the
        // writer has published the file's real end.
        job.progress.send_if_modified(|p| {
            let unset = p.stage == Stage::Writing;
            if unset {
                *p = progress;
            }
            unset
        });
    }

    /// The merge loop. Returns the spool's final progress and the number of failed upstreams.
    async fn merge(&self, job: &Arc<Job>, selected: &[usize]) -> Result<(Progress, usize), String> {
        let q = &job.query;
        let shared_query = Arc::new(q.clone());
        let limit_packets = min_limit(q.limit_packets, self.config.limit_packets);
        let limit_bytes = min_limit(q.limit_bytes, self.config.limit_bytes);
        let limits = Limits {
            packets: limit_packets,
            bytes: limit_bytes,
        };
        let writer = if self.config.spool {
            match self
                .spool
                .create(&job.id.to_string(), Arc::clone(&job.progress))
            {
                Ok(w) => {
                    *job.part.lock().expect("part lock") = Some(w.part_path().to_owned());
                    Some(w)
                }
                Err(e) => {
                    job.feed.set_direct();
                    job.event(
                        "job",
                        format!("the spool cannot take the capture ({e}): streaming to the clients attached"),
                        None,
                    );
                    None
                }
            }
        } else {
            None
        };
        let mut sink = Sink { job, writer };

        struct Input {
            rx: mpsc::Receiver<Message>,
            pending: VecDeque<Packet>,
            failed: bool,
        }
        // Upstreams stop on `stop`: when the user cancels (a child of `job.cancel`) or when a
        // limit ends the merge (only `stop`), so `job.cancel` alone means "cancelled by a user".
        let stop = job.cancel.child_token();
        let mut inputs = Vec::with_capacity(selected.len());
        for (k, &i) in selected.iter().enumerate() {
            let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
            self.upstreams[i].query(&shared_query, limits, tx, stop.child_token());
            job.upstream(k, |u| u.state = "requesting");
            job.event(self.upstreams[i].name(), "requesting", None);
            inputs.push(Input {
                rx,
                pending: VecDeque::new(),
                failed: false,
            });
        }
        // Declarations first: they decide the output format.
        let mut declared = Vec::new();
        let mut ended = vec![false; inputs.len()];
        for (k, input) in inputs.iter_mut().enumerate() {
            loop {
                let msg = tokio::select! {
                    m = input.rx.recv() => m,
                    _ = job.cancel.cancelled() => None,
                };
                match msg {
                    Some(Message::Declared(d)) => {
                        declared.extend(d);
                        break;
                    }
                    Some(Message::Warning(w)) => warn_upstream(job, k, w),
                    Some(Message::Failed(e)) => {
                        fail_upstream(job, k, &e);
                        input.failed = true;
                        ended[k] = true;
                        break;
                    }
                    Some(Message::Batch(b)) => {
                        count_batch(job, k, &b);
                        input.pending.extend(b);
                    }
                    None => {
                        ended[k] = true;
                        break;
                    }
                }
            }
        }
        let format = match q.output {
            OutputKind::Pcapng => OutputFormat::Pcapng,
            OutputKind::Auto => OutputFormat::choose(&declared),
        };
        let mut writer = Writer::new(format);
        let mut buf = BytesMut::with_capacity(FLUSH_BYTES * 2);
        writer.write_header(&mut buf);
        for &(lt, _) in &declared {
            writer.declare(&mut buf, lt);
        }
        let mut kway = KWay::new(inputs.len());
        for (k, e) in ended.iter().enumerate() {
            if *e && inputs[k].pending.is_empty() {
                kway.end(k);
            }
        }
        let (mut packets, mut written) = (0u64, buf.len() as u64);
        'merge: loop {
            for k in 0..inputs.len() {
                while kway.needs(k) {
                    if let Some(p) = inputs[k].pending.pop_front() {
                        kway.push(k, p);
                        continue;
                    }
                    if ended[k] {
                        kway.end(k);
                        continue;
                    }
                    // About to wait: hand what is encoded to the spool first, so clients see
                    // packets while a slow upstream thinks.
                    let msg = match inputs[k].rx.try_recv() {
                        Ok(m) => Some(m),
                        Err(mpsc::error::TryRecvError::Disconnected) => None,
                        Err(mpsc::error::TryRecvError::Empty) => {
                            sink.emit(buf.split().freeze()).await;
                            tokio::select! {
                                m = inputs[k].rx.recv() => m,
                                _ = job.cancel.cancelled() => break 'merge,
                            }
                        }
                    };
                    match msg {
                        Some(Message::Batch(b)) => {
                            count_batch(job, k, &b);
                            inputs[k].pending.extend(b);
                        }
                        Some(Message::Warning(w)) => warn_upstream(job, k, w),
                        Some(Message::Failed(e)) => {
                            fail_upstream(job, k, &e);
                            inputs[k].failed = true;
                            ended[k] = true;
                        }
                        Some(Message::Declared(_)) => {}
                        None => {
                            ended[k] = true;
                            job.upstream(k, |u| u.state = "done");
                        }
                    }
                }
            }
            let Some((k, p)) = kway.pop() else { break };
            if job.cancel.is_cancelled() {
                break;
            }
            let before = buf.len();
            if let Err(e) = writer.write(&mut buf, &p) {
                fail_upstream(job, k, &upstream::Error::Unwritable(e));
                inputs[k].failed = true;
                ended[k] = true;
                // Closing its channel stops the upstream's thread at its next send.
                inputs[k].rx.close();
                kway.end(k);
                continue;
            }
            // Limits count what was really encoded (a pcapng record is larger than a pcap one).
            let size = (buf.len() - before) as u64;
            if limit_packets.is_some_and(|l| packets >= l)
                || limit_bytes.is_some_and(|l| written + size > l)
            {
                buf.truncate(before);
                job.status.lock().expect("status lock").truncated_by_limit = true;
                job.event(
                    "job",
                    "a result limit was reached; the capture ends here",
                    None,
                );
                stop.cancel();
                break;
            }
            packets += 1;
            written += size;
            if buf.len() >= FLUSH_BYTES {
                sink.emit(buf.split().freeze()).await;
            }
        }
        sink.emit(buf.split().freeze()).await;
        {
            let mut s = job.status.lock().expect("status lock");
            s.packets = packets;
            s.bytes = written;
            for u in s.upstreams.iter_mut().filter(|u| u.state == "requesting") {
                u.state = "done";
            }
        }
        // Whatever ended the merge, the upstreams are no longer wanted.
        stop.cancel();
        let failed = inputs.iter().filter(|i| i.failed).count();
        let cancelled_by_user = job.cancel.is_cancelled();
        // Every byte is in the feed: clients end now, before the fsync that only protects
        // later hits.
        job.feed.finish(if cancelled_by_user {
            Err("cancelled".into())
        } else if failed > 0 && failed == inputs.len() {
            // A header-only capture must not look like a clean "no packets" answer.
            Err("every upstream failed".into())
        } else {
            Ok(())
        });
        let stage = match sink.writer.take() {
            Some(w) if !cancelled_by_user => {
                // The marker goes before the rename and leaves only after a complete one: a
                // crash in between errs on the side of running the job again.
                if failed > 0 {
                    self.spool.mark_partial(&job.id.to_string(), true);
                }
                let stage = w.finish().await;
                if failed == 0 && stage == Stage::Complete {
                    self.spool.mark_partial(&job.id.to_string(), false);
                }
                // The file holds what it holds (all of it, if complete): the feed lets go.
                job.feed.written(job.progress.borrow().len);
                stage
            }
            Some(w) => {
                drop(w);
                // The writer thread publishes `Failed` when it sees its channel close; wait
                // for it so that the job's end and the file's end agree.
                let mut rx = job.progress.subscribe();
                let _ = tokio::time::timeout(
                    Duration::from_secs(30),
                    rx.wait_for(|p| p.stage != Stage::Writing),
                )
                .await;
                Stage::Failed("cancelled".into())
            }
            None => Stage::Failed(if self.config.spool {
                "the spool failed".into()
            } else {
                "spooling is off".into()
            }),
        };
        let Progress { len, sealed, .. } = job.progress.borrow().clone();
        Ok((Progress { len, sealed, stage }, failed))
    }
}

/// Where a job's encoded bytes go: its feed (every client) and, while it can take them, its
/// spool file. A spool that fails mid-job (a full disk) is dropped — which deletes its part
/// file — and the job goes on streaming to the clients attached, paced by the slowest.
struct Sink<'a> {
    job: &'a Job,
    writer: Option<SpoolWriter>,
}

impl Sink<'_> {
    async fn emit(&mut self, chunk: bytes::Bytes) {
        if chunk.is_empty() {
            return;
        }
        // `/status` shows the capture growing.
        self.job.status.lock().expect("status lock").bytes += chunk.len() as u64;
        if let Some(w) = &self.writer {
            if !w.write(chunk.clone()).await {
                self.writer = None;
                self.job.feed.set_direct();
                self.job.event(
                    "job",
                    "the spool cannot take the capture (disk full?): streaming to the clients attached; the result will not be kept",
                    None,
                );
            }
        }
        let written = self.job.progress.borrow().len;
        tokio::select! {
            () = self.job.feed.push(chunk, written) => {}
            () = self.job.cancel.cancelled() => {}
        }
    }
}

/// Counts a batch into its upstream's progress: per batch, since a lock per packet would cost
/// more than the merge itself.
fn count_batch(job: &Job, k: usize, batch: &[Packet]) {
    let bytes: u64 = batch.iter().map(|p| p.data.len() as u64).sum();
    job.upstream(k, |u| {
        u.packets += batch.len() as u64;
        u.bytes += bytes;
    });
}

/// Records an upstream's warning (it goes on).
fn warn_upstream(job: &Job, k: usize, warning: String) {
    let name = job.upstream(k, |u| {
        u.error = Some(warning.clone());
        u.name.clone()
    });
    job.event(&name, warning, None);
}

fn fail_upstream(job: &Job, k: usize, e: &upstream::Error) {
    let name = job.upstream(k, |u| {
        u.state = "failed";
        u.error = Some(e.to_string());
        u.name.clone()
    });
    job.event(&name, format!("failed: {e}"), None);
}

fn min_limit(request: Option<u64>, global: u64) -> Option<u64> {
    match (request, global) {
        (Some(r), 0) => Some(r),
        (Some(r), g) => Some(r.min(g)),
        (None, 0) => None,
        (None, g) => Some(g),
    }
}
