//! One job: its identity, its one typed state ([`Snapshot`] on one `watch`), the feed its
//! readers follow, and how a reader gets the capture ([`Job::open`]).
//!
//! Invariants: every change of state goes through [`Job::update`] or [`Job::event`], which
//! publish on the watch (so a waiting reader always wakes) and tell the job store when the
//! change is one it keeps (state changes and events; never per chunk).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::state::{EndReason, Event, Mode, Snapshot, State};
use super::store::Store;
use super::Weight;
use crate::pcap::Timestamp;
use crate::query::{JobId, Query};
use crate::spool::{Complete, Feed, FeedReader, Follower, Spool};

/// Why a job was stopped before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// A user cancelled it.
    ByUser,
    /// The server is shutting down.
    Shutdown,
}

/// How a reader gets a job's capture.
#[derive(Debug)]
pub enum Capture {
    /// The finished, kept file.
    Complete(Complete),
    /// The capture as it is produced (from byte 0, following until the job ends).
    Follow(Follower),
    /// There is no capture to read.
    Gone(Gone),
}

/// Why a job has no capture to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Gone {
    /// The job failed or was cancelled.
    #[error("the job ended without a capture; ask again to run it again")]
    Ended,
    /// It streamed without a spool and its start has left memory.
    #[error("the capture was streamed without a spool and its start is gone; ask again to run the job again")]
    StartLost,
    /// It streamed without a spool and has ended: nothing was kept.
    #[error(
        "the capture was streamed to its clients but not kept; ask again to run the job again"
    )]
    NotKept,
    /// Its file was removed from the spool (cleanup or a user).
    #[error("the capture was removed from the spool; ask again to run the job again")]
    Removed,
    /// The spool's file system does not answer (frozen, a hung mount): its file cannot be
    /// opened now.
    #[error("the spool's file system is not answering (frozen or hung); try again later")]
    Stalled,
}

/// One job. See the module documentation.
#[derive(Debug)]
pub struct Job {
    /// Its id.
    pub id: JobId,
    /// Its query.
    pub query: Query,
    /// When it was requested.
    pub created: SystemTime,
    /// Who first asked for it (None when authentication is off).
    pub user: Option<String>,
    state: watch::Sender<Snapshot>,
    feed: Arc<Feed>,
    spool: Spool,
    store: Store,
    cancel: CancellationToken,
    stop: OnceLock<Stop>,
    /// Removed from the registry (deleted): its history is gone and must not be written back
    /// by its own end (a new run under the same id has a row of its own).
    detached: AtomicBool,
    /// What the indexes estimated of its answer before it started.
    estimate: OnceLock<Weight>,
}

impl Job {
    /// What the indexes estimated of its answer before it started (a job from the history,
    /// or one joined before the estimate was made, has none).
    pub fn estimate(&self) -> Option<&Weight> {
        self.estimate.get()
    }

    /// Records the estimate made before it started (the first one stays).
    pub(super) fn set_estimate(&self, w: Weight) {
        let _ = self.estimate.set(w);
    }

    pub(super) fn new(
        id: JobId,
        query: Query,
        user: Option<String>,
        created: SystemTime,
        snapshot: Snapshot,
        spool: Spool,
        store: Store,
    ) -> Job {
        let feed = Feed::new();
        if matches!(snapshot.mode, Mode::Direct(_)) {
            feed.set_direct();
        }
        if snapshot.state.is_final() {
            // A job from the history (or a hit): nobody will push to its feed.
            feed.finish(Ok(()));
        }
        Job {
            id,
            query,
            created,
            user,
            state: watch::Sender::new(snapshot),
            feed,
            spool,
            store,
            cancel: CancellationToken::new(),
            stop: OnceLock::new(),
            detached: AtomicBool::new(false),
            estimate: OnceLock::new(),
        }
    }

    /// A copy of its state now.
    pub fn snapshot(&self) -> Snapshot {
        self.state.borrow().clone()
    }

    /// Its overall state now.
    pub fn state(&self) -> State {
        self.state.borrow().state
    }

    /// Reads a part of its state without copying the rest.
    pub fn with<R>(&self, f: impl FnOnce(&Snapshot) -> R) -> R {
        f(&self.state.borrow())
    }

    /// Watches its state (every change is published).
    pub fn subscribe(&self) -> watch::Receiver<Snapshot> {
        self.state.subscribe()
    }

    pub(super) fn feed(&self) -> &Arc<Feed> {
        &self.feed
    }

    pub(super) fn cancel_token(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Why it was stopped, if it was.
    pub(super) fn stopped(&self) -> Option<Stop> {
        self.stop.get().copied()
    }

    /// Stops writing its history (it was deleted).
    pub(super) fn detach(&self) {
        self.detached.store(true, Ordering::SeqCst);
    }

    fn keeps_history(&self) -> bool {
        !self.detached.load(Ordering::SeqCst)
    }

    /// Asks the job to stop; the first reason given is kept. A user's cancel ends it
    /// `Cancelled`, a shutdown `Failed` ("interrupted by shutdown").
    pub fn stop(&self, why: Stop) {
        let _ = self.stop.set(why);
        self.cancel.cancel();
    }

    /// How a reader gets the capture now: waits (on the job's own state, no polling) while the
    /// job is queued or between its part file and its final name. `reserved`: the reader the
    /// request that created the job registered before the job ran ([`super::Started`]) — a
    /// job streamed without a spool keeps its bytes for it, however fast it ends.
    ///
    /// The spool's files are opened off the async threads within [`crate::spool::FS_WAIT`].
    pub async fn open(&self, mut reserved: Option<FeedReader>) -> Capture {
        let mut rx = self.state.subscribe();
        loop {
            let (state, direct, part) = {
                let s = rx.borrow_and_update();
                (s.state, matches!(s.mode, Mode::Direct(_)), s.part.clone())
            };
            match state {
                State::Completed | State::Partial => {
                    if direct && self.feed.replayable() {
                        if let Some(r) = reserved.take() {
                            return Capture::Follow(Follower::with_reader(None, r));
                        }
                    }
                    return match self.spool.open_complete_async(&self.id).await {
                        Ok(Some(c)) => Capture::Complete(c),
                        Ok(None) if direct => Capture::Gone(Gone::NotKept),
                        Ok(None) => Capture::Gone(Gone::Removed),
                        Err(_) => Capture::Gone(Gone::Stalled),
                    };
                }
                State::Failed | State::Cancelled => return Capture::Gone(Gone::Ended),
                State::Queued => {}
                State::Running => {
                    if !self.feed.replayable() {
                        return Capture::Gone(Gone::StartLost);
                    }
                    let follow = |file, reserved: Option<FeedReader>| match reserved {
                        Some(r) => Follower::with_reader(file, r),
                        None => Follower::new(file, &self.feed),
                    };
                    if direct {
                        return Capture::Follow(follow(None, reserved));
                    }
                    // Open the part file now: the descriptor survives the rename (or the
                    // unlink) at the end, and serves whatever has left the feed. If it has
                    // just been renamed, the job's end is about to be published.
                    // Writable: if the file is abandoned, the followers give back what they
                    // have all read (`Feed::give_back`).
                    if let Some(p) = part {
                        let open = move |_: &Spool| {
                            std::fs::OpenOptions::new()
                                .read(true)
                                .write(true)
                                .open(p)
                                .ok()
                        };
                        match self.spool.off_thread(crate::spool::Lane::Read, open).await {
                            Ok(Some(f)) => return Capture::Follow(follow(Some(f), reserved)),
                            Ok(None) => {}
                            Err(_) => return Capture::Gone(Gone::Stalled),
                        }
                    }
                }
            }
            if rx.changed().await.is_err() {
                return Capture::Gone(Gone::Ended);
            }
        }
    }

    /// Changes the state without an event; `keep` says whether the store records it.
    pub(super) fn update(&self, keep: bool, f: impl FnOnce(&mut Snapshot)) {
        self.state.send_modify(f);
        if keep && self.keeps_history() {
            self.store.save(self);
        }
    }

    /// Records an event, moving the state to `to` (unless it is already final).
    pub(super) fn event(&self, who: &str, msg: impl Into<String>, to: Option<State>) {
        let msg = msg.into();
        let mut ev = None;
        self.state.send_modify(|s| {
            if let Some(st) = to {
                if !s.state.is_final() {
                    s.state = st;
                }
            }
            tracing::info!(who, state = s.state.as_str(), "{msg}");
            let e = Event {
                datetime: crate::query::rfc3339(Timestamp::now().as_nanos()),
                name: who.to_owned(),
                msg,
                state: s.state,
            };
            ev = Some((s.events.len(), e.clone()));
            s.events.push(e);
        });
        if !self.keeps_history() {
            return;
        }
        if let Some((seq, e)) = ev {
            self.store.event(self.id, seq, e);
        }
        if to.is_some() {
            self.store.save(self);
        }
    }

    /// Ends the job: its final state and reason, one event, stored.
    pub(super) fn end(&self, state: State, reason: EndReason) {
        let msg = reason.to_string();
        // State and reason change together (`end` is set exactly when the state is final).
        self.update(true, |s| {
            if !s.state.is_final() {
                s.state = state;
                s.end = Some(reason);
                s.ended_ns = Some(Timestamp::now().as_nanos());
                s.part = None;
            }
        });
        self.event("job", msg, None);
    }
}
