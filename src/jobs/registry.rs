//! The registry: the map of jobs by id — dedup, join in flight, admission (a bounded number
//! merging, a bounded queue) — and the jobs' history at start and shutdown.
//!
//! Invariants: no I/O under the map's lock (file-system checks happen before it is taken, and
//! the decision is re-checked under it); a failed or cancelled job never poisons its id — the
//! next identical request starts afresh; a partial result is never a hit (asking again asks
//! the failed upstreams again).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::Semaphore;
use tracing::Instrument;

use super::job::{Job, Stop};
use super::run::{self, Context};
use super::state::{
    DirectReason, EndReason, Failure, Mode, Snapshot, State, UpstreamState, UpstreamStatus,
};
use super::store::{Row, Store};
use super::{Error, Weight};

/// How long a directory may take to estimate a query's answer (reading its indexes).
pub const ESTIMATE_WITHIN: Duration = Duration::from_secs(10);
use crate::query::{JobId, Query, QueryConfig};
use crate::spool::{FeedReader, Spool};
use crate::upstream::{local::LocalUpstream, sensor_tls, stenographer::Sensor, Upstream};

/// The `jobs` part of the configuration.
#[derive(Debug, Clone)]
pub struct JobsConfig {
    /// Write each job's capture to the spool.
    pub spool: bool,
    /// Minimum free bytes on the spool's file system to admit a job.
    pub free_bytes: u64,
    /// Jobs merging at once.
    pub max_jobs: usize,
    /// Jobs waiting beyond `max_jobs` before new ones are refused.
    pub max_queued: usize,
    /// Global caps on a result (0: none).
    pub limit_bytes: u64,
    /// Global caps on a result (0: none).
    pub limit_packets: u64,
    /// A new job estimated larger is refused unless it says `ignore-weight` (0: no check).
    pub max_estimated_bytes: u64,
    /// To parse stored queries back.
    pub query: QueryConfig,
}

/// The job registry. See the module documentation.
#[derive(Debug)]
pub struct Registry {
    config: JobsConfig,
    spool: Spool,
    store: Store,
    cx: Arc<ContextHandle>,
    jobs: Mutex<HashMap<JobId, Arc<Job>>>,
    /// Wakes the spool cleanup task before its period is up.
    cleanup_now: tokio::sync::Notify,
}

/// The run context, kept behind a Debug-able wrapper.
struct ContextHandle(Arc<Context>);

impl std::fmt::Debug for ContextHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("upstreams", &self.0.upstreams.len())
            .finish()
    }
}

/// A job as [`Registry::start`] hands it to the request that asked for it.
#[derive(Debug)]
pub struct Started {
    /// The job (new, joined, or a hit).
    pub job: Arc<Job>,
    /// For a job this request created: a reader of its feed at byte 0, registered before the
    /// job ran. A job streamed without a spool file paces on its readers only, so however
    /// fast it ends, its bytes wait for this one (pass it to [`Job::open`]; dropping it lets
    /// them go).
    pub reserved: Option<FeedReader>,
}

impl Started {
    fn joined(job: &Arc<Job>) -> Started {
        Started {
            job: Arc::clone(job),
            reserved: None,
        }
    }
}

impl Registry {
    /// A registry over the upstreams, the spool and the job store in it; jobs of the store's
    /// history come back (those that were running are marked interrupted).
    ///
    /// # Errors
    /// A sensor's TLS material cannot be used.
    pub fn new(
        config: JobsConfig,
        locals: &[crate::config::LocalDir],
        sensors: &[crate::config::Stenographer],
        spool: Spool,
        with_store: bool,
    ) -> Result<Registry, sensor_tls::Error> {
        let mut upstreams: Vec<Upstream> = locals
            .iter()
            .map(|d| Upstream::Local(Arc::new(LocalUpstream::new(d))))
            .collect();
        for s in sensors {
            upstreams.push(Upstream::Stenographer(Arc::new(Sensor::new(s)?)));
        }
        let (store, rows) = if with_store {
            Store::open(spool.dir())
        } else {
            (Store::none(), Vec::new())
        };
        let cx = Context {
            upstreams,
            spool: config.spool.then(|| spool.clone()),
            permits: Arc::new(Semaphore::new(config.max_jobs)),
            limit_packets: config.limit_packets,
            limit_bytes: config.limit_bytes,
            free_bytes: config.free_bytes,
            metrics: Arc::new(crate::metrics::Metrics::new()),
        };
        let r = Registry {
            config,
            spool,
            store,
            cx: Arc::new(ContextHandle(Arc::new(cx))),
            jobs: Mutex::new(HashMap::new()),
            cleanup_now: tokio::sync::Notify::new(),
        };
        r.recover(rows);
        Ok(r)
    }

    /// Brings back the stored history: running jobs were interrupted; completed jobs whose
    /// file is gone are forgotten; complete files without a row (an older version's) become
    /// completed jobs.
    fn recover(&self, rows: Vec<Row>) {
        let files: HashMap<JobId, u64> = self
            .spool
            .list()
            .into_iter()
            .map(|f| (f.id, f.len))
            .collect();
        let mut jobs = HashMap::new();
        let (mut interrupted, mut forgotten) = (0, 0);
        for row in rows {
            let Ok(query) = crate::query::parse_path(
                &row.query_path,
                crate::pcap::Timestamp(0),
                &self.config.query,
            ) else {
                self.store.delete(row.id);
                continue;
            };
            let mut state = row.state;
            let mut end = row.end_reason.map(EndReason::Recorded);
            let has_file = files.contains_key(&row.id);
            if !state.is_final() {
                // A job the process died under: its file (if it got renamed before the row
                // said so) is not trusted.
                self.spool.remove(&row.id);
                state = State::Failed;
                end = Some(EndReason::Restart);
                interrupted += 1;
            } else if matches!(state, State::Completed | State::Partial)
                && !has_file
                && row.direct.is_none()
            {
                // A kept capture cleanup or a user deleted: its history goes with it. (A job
                // streamed without a spool never had a file: its history stays.)
                self.store.delete(row.id);
                forgotten += 1;
                continue;
            }
            let created = SystemTime::UNIX_EPOCH
                + Duration::from_nanos(row.created_ns.clamp(0, u64::MAX.into()) as u64);
            let snapshot = Snapshot {
                state,
                upstreams: row.upstreams,
                packets: row.packets,
                bytes: row.bytes,
                mode: match row.direct {
                    None => Mode::Spooled,
                    Some(_) => Mode::Direct(DirectReason::SpoolOff),
                },
                part: None,
                truncated_by_limit: row.truncated,
                end,
                ended_ns: row.ended_ns,
                events: row.events,
            };
            let job = Job::new(
                row.id,
                query,
                row.user,
                created,
                snapshot,
                self.spool.clone(),
                self.store.clone(),
            );
            if state != row.state {
                job.event("job", EndReason::Restart.to_string(), Some(State::Failed));
            }
            jobs.insert(row.id, Arc::new(job));
        }
        if interrupted + forgotten > 0 {
            tracing::info!(
                interrupted,
                forgotten,
                "job history: interrupted jobs marked failed, jobs without a file forgotten"
            );
        }
        *self.jobs.lock().expect("jobs lock") = jobs;
    }

    /// The upstreams, in configuration order.
    pub fn upstreams(&self) -> &[Upstream] {
        &self.cx.0.upstreams
    }

    /// Where jobs, upstream answers and the front's events are counted.
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.cx.0.metrics
    }

    /// The spool.
    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    /// The job of an id, if known.
    pub fn get(&self, id: &JobId) -> Option<Arc<Job>> {
        self.jobs.lock().expect("jobs lock").get(id).cloned()
    }

    /// All jobs, oldest first.
    pub fn all(&self) -> Vec<Arc<Job>> {
        let mut v: Vec<_> = self
            .jobs
            .lock()
            .expect("jobs lock")
            .values()
            .cloned()
            .collect();
        v.sort_by_key(|j| (j.created, j.id));
        v
    }

    /// Removes a job: deletes its file (off the async threads), then stops it if running and
    /// forgets its history. Whether there was anything to remove.
    ///
    /// # Errors
    /// The spool's file system does not answer ([`crate::spool::Error::Stalled`]): nothing is
    /// removed yet. The unlink still runs once it answers, and the job is forgotten with it
    /// then, so the list never shows a job whose file is gone.
    pub async fn remove(self: &Arc<Self>, id: &JobId) -> Result<bool, crate::spool::Error> {
        let id = *id;
        let registry = Arc::clone(self);
        self.spool
            .off_thread(crate::spool::Lane::Write, move |sp| {
                let file = sp.remove(&id);
                registry.forget_removed(id) || file
            })
            .await
    }

    /// The rest of [`remove`](Self::remove) once the file is gone: whether there was a job.
    fn forget_removed(&self, id: JobId) -> bool {
        let job = self.jobs.lock().expect("jobs lock").remove(&id);
        if let Some(j) = &job {
            j.detach();
            j.stop(Stop::ByUser);
        }
        self.store.delete(id);
        job.is_some()
    }

    /// Forgets jobs whose files cleanup deleted, and failed or cancelled jobs older than
    /// `keep_failed` (their history stays visible that long; their ids restart anyway).
    pub fn forget(&self, deleted: &[JobId], keep_failed: Duration) {
        let now = SystemTime::now();
        let mut gone = Vec::new();
        self.jobs.lock().expect("jobs lock").retain(|id, j| {
            let state = j.state();
            let deleted = state.is_final() && deleted.contains(id);
            let stale = matches!(state, State::Failed | State::Cancelled)
                && now.duration_since(j.created).unwrap_or_default() > keep_failed;
            if deleted || stale {
                j.detach();
                gone.push(*id);
            }
            !(deleted || stale)
        });
        for id in gone {
            self.store.delete(id);
        }
    }

    /// The job for `query`: joins an existing one or starts a new one, owned by `user`.
    ///
    /// # Errors
    /// Admission control (spool space, queue length) or an unknown sensor.
    pub fn get_or_start(&self, query: Query, user: Option<&str>) -> Result<Started, Error> {
        let id = query.id();
        let existing = self.get(&id);
        if let Some(j) = &existing {
            if self.joinable(j) {
                return Ok(Started::joined(j));
            }
        }
        let selected = self.select(&query)?;
        // I/O before the lock: an orphan complete file, the free space.
        let orphan = existing.is_none() && self.spool.complete_len(&id).is_some();
        let free = (self.config.spool && !orphan).then(|| self.spool.free_bytes());
        let mut jobs = self.jobs.lock().expect("jobs lock");
        // Someone may have started or replaced the job meanwhile.
        if let Some(j) = jobs.get(&id) {
            if !existing.as_ref().is_some_and(|e| Arc::ptr_eq(e, j)) {
                return Ok(Started::joined(j));
            }
        }
        if orphan {
            let job = Arc::new(self.new_job(id, query, user, &selected, State::Completed));
            job.update(false, |s| {
                s.end = Some(EndReason::FoundInSpool);
                s.bytes = self.spool.complete_len(&id).unwrap_or(0);
            });
            jobs.insert(id, Arc::clone(&job));
            drop(jobs);
            self.store.begin(&job);
            job.event("job", EndReason::FoundInSpool.to_string(), None);
            return Ok(Started::joined(&job));
        }
        if let Some(free) = free.filter(|&f| self.short_of_space(&jobs, f)) {
            return Err(Error::InsufficientStorage {
                free,
                needed: self.config.free_bytes,
            });
        }
        // Jobs still `Queued` may be about to take a free permit: only those beyond the free
        // permits really wait.
        let waiting = jobs.values().filter(|j| j.state() == State::Queued).count();
        if waiting >= self.config.max_queued + self.cx.0.permits.available_permits() {
            return Err(Error::Busy(waiting));
        }
        let job = Arc::new(self.new_job(id, query, user, &selected, State::Queued));
        jobs.insert(id, Arc::clone(&job));
        drop(jobs);
        self.store.begin(&job);
        let span =
            tracing::info_span!(parent: None, "job", id = %id, query = %job.query.canonical());
        let _g = span.enter();
        job.event("job", "created", None);
        drop(_g);
        self.cx.0.metrics.job_started();
        // Registered before the job can produce a byte (see `Started`).
        let reserved = Some(job.feed().reader());
        tokio::spawn(run::run(Arc::clone(&self.cx.0), Arc::clone(&job), selected).instrument(span));
        Ok(Started { job, reserved })
    }

    /// Whether a new job would be refused for space with `free` bytes free on the spool's file
    /// system: the configured floor (`None`: it would not, or the spool is off).
    pub fn space_floor_unmet(&self, free: u64) -> Option<u64> {
        let jobs = self.jobs.lock().expect("jobs lock");
        (self.config.spool && self.short_of_space(&jobs, free)).then_some(self.config.free_bytes)
    }

    /// Admission's space rule: space held only by abandoned part files that slow readers
    /// still follow comes back as they read, so it does not count against a new job.
    fn short_of_space(&self, jobs: &HashMap<JobId, Arc<Job>>, free: u64) -> bool {
        let held: u64 = jobs.values().map(|j| j.feed().held_bytes()).sum();
        free.saturating_add(held) < self.config.free_bytes
    }

    /// The job for `query` as [`get_or_start`](Self::get_or_start) gives it — but with the
    /// check on, a new job is first weighed ([`estimate`](Self::estimate)): over
    /// `max_estimated_bytes` it is refused unless the query says `ignore-weight`. Joining a
    /// job, or a hit, costs nothing and is never refused. The estimate is kept in the job.
    ///
    /// # Errors
    /// [`Error::TooHeavy`], and those of [`get_or_start`](Self::get_or_start).
    pub async fn start(&self, query: Query, user: Option<&str>) -> Result<Started, Error> {
        // Weighed only when the check is on (`max_estimated_bytes` > 0): the estimate reads
        // every index of the window before the first packet.
        let new = self.config.max_estimated_bytes > 0
            && !self.get(&query.id()).is_some_and(|j| self.joinable(&j));
        let weight = if new {
            Some(self.estimate(&query).await?)
        } else {
            None
        };
        if let Some(w) = &weight {
            // What the answer can be at most: the estimate, cut by the request's own limits
            // and the global caps (a job that stops at 1,000 bytes is not heavy).
            let cap = |asked: Option<u64>, global: u64| match (asked, global) {
                (Some(a), 0) => Some(a),
                (a, g) if g > 0 => Some(a.map_or(g, |a| a.min(g))),
                _ => None,
            };
            let mut bytes = w.of.bytes;
            if let Some(p) = cap(query.limit_packets, self.config.limit_packets) {
                if w.of.packets > p {
                    bytes =
                        u64::try_from(u128::from(bytes) * u128::from(p) / u128::from(w.of.packets))
                            .unwrap_or(u64::MAX);
                }
            }
            if let Some(b) = cap(query.limit_bytes, self.config.limit_bytes) {
                bytes = bytes.min(b);
            }
            if w.limit > 0 && bytes > w.limit && !query.ignore_weight {
                return Err(Error::TooHeavy(Box::new(w.clone())));
            }
        }
        let started = self.get_or_start(query, user)?;
        if let Some(w) = weight {
            started.job.set_estimate(w);
        }
        Ok(started)
    }

    /// What the indexes of the upstreams `query` asks estimate of its answer (see
    /// [`LocalUpstream::estimate`]), each directory on a blocking thread within
    /// [`ESTIMATE_WITHIN`] (one that does not answer in time — a hung mount — is named as not
    /// estimated).
    ///
    /// # Errors
    /// The query names an unknown sensor.
    pub async fn estimate(&self, query: &Query) -> Result<Weight, Error> {
        let mut w = Weight {
            limit: self.config.max_estimated_bytes,
            ..Weight::default()
        };
        let q = Arc::new(query.clone());
        let mut asked = Vec::new();
        for i in self.select(query)? {
            match &self.upstreams()[i] {
                Upstream::Local(u) => {
                    let (u, q) = (Arc::clone(u), Arc::clone(&q));
                    let name = u.name().to_owned();
                    let task = tokio::task::spawn_blocking(move || u.estimate(&q));
                    asked.push((name, task));
                }
                Upstream::Stenographer(s) => w.not_estimated.push(s.name().to_owned()),
            }
        }
        for (name, task) in asked {
            match tokio::time::timeout(ESTIMATE_WITHIN, task).await {
                Ok(Ok(e)) => w.of += e,
                _ => w.not_estimated.push(name),
            }
        }
        Ok(w)
    }

    /// Asks the spool cleanup task to run now (Docket-py's `cleanup` route).
    pub fn request_cleanup(&self) {
        self.cleanup_now.notify_one();
    }

    /// Resolves when a cleanup was asked for (by [`Registry::request_cleanup`]).
    pub async fn cleanup_requested(&self) {
        self.cleanup_now.notified().await;
    }

    /// Merge slots free now (of `max_jobs`): for diagnostics.
    pub fn free_slots(&self) -> usize {
        self.cx.0.permits.available_permits()
    }

    /// Whether a request for `j`'s query joins it (reads its capture from byte 0).
    fn joinable(&self, j: &Job) -> bool {
        match j.state() {
            // A job streaming without a spool whose first bytes have left its feed cannot
            // serve a newcomer from byte 0: the newcomer gets a job of its own.
            State::Queued | State::Running => j.feed().replayable(),
            // A hit (the file may have been cleaned up since).
            State::Completed => self.spool.complete_len(&j.id).is_some(),
            _ => false,
        }
    }

    fn select(&self, query: &Query) -> Result<Vec<usize>, Error> {
        let ups = self.upstreams();
        for s in &query.sensors {
            if !ups.iter().any(|u| u.name() == s) {
                return Err(Error::UnknownSensor(s.clone()));
            }
        }
        Ok((0..ups.len())
            .filter(|&i| {
                query.sensors.is_empty() || query.sensors.iter().any(|s| s == ups[i].name())
            })
            .collect())
    }

    fn new_job(
        &self,
        id: JobId,
        query: Query,
        user: Option<&str>,
        selected: &[usize],
        state: State,
    ) -> Job {
        let snapshot = Snapshot {
            state,
            upstreams: selected
                .iter()
                .map(|&i| UpstreamStatus {
                    name: self.upstreams()[i].name().to_owned(),
                    state: UpstreamState::Queued,
                    packets: 0,
                    bytes: 0,
                    error: None::<Failure>,
                    warnings: Vec::new(),
                })
                .collect(),
            packets: 0,
            bytes: 0,
            mode: if self.config.spool {
                Mode::Spooled
            } else {
                Mode::Direct(DirectReason::SpoolOff)
            },
            part: None,
            truncated_by_limit: false,
            end: None,
            ended_ns: None,
            events: Vec::new(),
        };
        Job::new(
            id,
            query,
            user.map(str::to_owned),
            SystemTime::now(),
            snapshot,
            self.spool.clone(),
            self.store.clone(),
        )
    }

    /// Stops every job still queued or running (they end Failed, "interrupted by shutdown",
    /// and their readers' streams end incomplete). Returns them.
    pub fn interrupt(&self) -> Vec<Arc<Job>> {
        let live: Vec<Arc<Job>> = self
            .all()
            .into_iter()
            .filter(|j| !j.state().is_final())
            .collect();
        for j in &live {
            j.stop(Stop::Shutdown);
        }
        if !live.is_empty() {
            tracing::info!(
                jobs = live.len(),
                "shutdown: running jobs stopped, recorded as interrupted"
            );
        }
        live
    }

    /// [`Registry::interrupt`], then waits (bounded) for those jobs to record their end, and
    /// flushes the job store.
    pub async fn shutdown(&self, within: Duration) {
        let live = self.interrupt();
        let _ = tokio::time::timeout(within, async {
            for j in &live {
                let mut rx = j.subscribe();
                let _ = rx.wait_for(|s| s.state.is_final()).await;
            }
        })
        .await;
        if !live.is_empty() {
            tracing::info!(
                jobs = live.len(),
                "shutdown: running jobs recorded as interrupted"
            );
        }
        // Bounded too: a stalled spool file system (the store lives there) must not hold the
        // process past its stop; what is not written is what the next start marks interrupted.
        if tokio::time::timeout(within, self.store.flush())
            .await
            .is_err()
        {
            tracing::warn!(
                within_s = within.as_secs(),
                "shutdown: the job store did not flush in time (a stalled spool file system?); \
                 jobs it did not record are marked interrupted at the next start"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::Capture;
    use crate::spool::FollowEnd;

    /// A job streamed without a spool that ends before the request that created it opens it
    /// (a small answer ends in microseconds) still reaches that request whole: its reader was
    /// registered before the job ran. Anyone else arriving after the end finds nothing kept.
    #[tokio::test]
    async fn a_direct_job_that_ends_before_its_requester_opens_it_is_still_served_whole() {
        let dir = tempfile::TempDir::new().unwrap();
        let merge = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/pcaps/merge");
        let conf = dir.path().join("docket.toml");
        std::fs::write(
            &conf,
            format!(
                "spool = false\nspool_dir = \"{}\"\nfree_bytes = 0\n[[local]]\nname = \"m\"\npath = \"{}\"\nindex = false\n",
                dir.path().join("spool").display(),
                merge.display()
            ),
        )
        .unwrap();
        let config = crate::config::Config::load(&conf).unwrap();
        let spool = Spool::open(&config.spool_dir).unwrap();
        let registry = Registry::new(
            config.jobs(),
            &config.local,
            &config.stenographer,
            spool,
            false,
        )
        .unwrap();
        let now = crate::pcap::Timestamp::now();
        let query =
            crate::query::parse_path("after/2000-01-01T00:00:00Z", now, &QueryConfig::default())
                .unwrap();
        let started = registry.start(query, None).await.unwrap();
        let job = started.job;
        let mut st = job.subscribe();
        while !st.borrow_and_update().state.is_final() {
            st.changed().await.unwrap();
        }
        assert_eq!(job.state(), State::Completed);
        let Capture::Follow(mut f) = job.open(started.reserved).await else {
            panic!("the requester found nothing");
        };
        let mut got = 0u64;
        loop {
            match f.next().await {
                Ok(b) => got += b.len() as u64,
                Err(FollowEnd::Complete) => break,
                Err(e) => panic!("{e:?}"),
            }
        }
        assert_eq!(got, job.snapshot().bytes);
        assert!(got > 24, "a header and packets");
        assert!(matches!(
            job.open(None).await,
            Capture::Gone(crate::jobs::Gone::NotKept)
        ));
    }
}
