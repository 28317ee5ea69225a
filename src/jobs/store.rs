//! The job store: every job's history in an embedded SQLite database (`jobs.sqlite` in the
//! spool directory), so `/jobs`, `/status`, `/ids` and the UI survive a restart.
//!
//! Invariants:
//! - Written at state changes and events, never per chunk, by one thread that owns the write
//!   connection and commits what has queued up in one transaction; callers never wait on the
//!   disk (a job's life does not depend on its history being written).
//! - WAL mode, `synchronous = NORMAL`: a crash loses at most the last transactions, never the
//!   database. A job whose row still says Queued or Running at the next start was interrupted
//!   (the registry marks it Failed, "interrupted by restart").
//! - The schema is versioned with `PRAGMA user_version`; [`MIGRATIONS`] bring any older
//!   database up to date at open. A database that cannot be opened or migrated is moved aside
//!   (named in the log) and a new one is started: losing history must never stop the gateway.

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use rusqlite::{params, Connection};

use super::job::Job;
use super::state::{Event, Mode, State, UpstreamStatus};
use crate::pcap::Timestamp;
use crate::query::JobId;

/// Schema migrations; migration `i` takes the database from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &["
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        query_path TEXT NOT NULL,
        canonical TEXT NOT NULL,
        created_ns INTEGER NOT NULL,
        user TEXT,
        state TEXT NOT NULL,
        end_reason TEXT,
        ended_ns INTEGER,
        packets INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        truncated INTEGER NOT NULL,
        direct TEXT,
        upstreams TEXT NOT NULL
    );
    CREATE INDEX jobs_created ON jobs (created_ns);
    CREATE TABLE events (
        job TEXT NOT NULL,
        seq INTEGER NOT NULL,
        at TEXT NOT NULL,
        who TEXT NOT NULL,
        msg TEXT NOT NULL,
        state TEXT NOT NULL,
        PRIMARY KEY (job, seq)
    );
"];

/// The database's file name in the spool directory.
pub const FILE: &str = "jobs.sqlite";

/// Why the store cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// SQLite refused.
    #[error("job store {path}: {source}")]
    Sqlite {
        /// The database.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// The database is newer than this program.
    #[error("job store {path}: schema version {found} is newer than this program's {known}")]
    TooNew {
        /// The database.
        path: PathBuf,
        /// Its version.
        found: usize,
        /// The newest this program knows.
        known: usize,
    },
}

/// One job as stored.
#[derive(Debug, Clone)]
pub struct Row {
    /// Its id.
    pub id: JobId,
    /// The query in the URL grammar (absolute times), to parse back.
    pub query_path: String,
    /// The canonical query (for readers of the database; the id is what identifies the job).
    pub canonical: String,
    /// When it was requested (ns since the epoch).
    pub created_ns: i128,
    /// Who first asked.
    pub user: Option<String>,
    /// Its state when last written.
    pub state: State,
    /// What ended it.
    pub end_reason: Option<String>,
    /// When it ended.
    pub ended_ns: Option<i128>,
    /// Packets written.
    pub packets: u64,
    /// Bytes written.
    pub bytes: u64,
    /// A limit ended it early.
    pub truncated: bool,
    /// Why it streamed without a spool, if it did.
    pub direct: Option<String>,
    /// Per upstream.
    pub upstreams: Vec<UpstreamStatus>,
    /// History, in order.
    pub events: Vec<Event>,
}

impl Row {
    fn of(job: &Job) -> Row {
        job.with(|s| Row {
            id: job.id,
            query_path: job.query.to_path(),
            canonical: job.query.canonical(),
            created_ns: Timestamp::from(job.created).as_nanos(),
            user: job.user.clone(),
            state: s.state,
            end_reason: s.end.as_ref().map(ToString::to_string),
            ended_ns: s.ended_ns,
            packets: s.packets,
            bytes: s.bytes,
            truncated: s.truncated_by_limit,
            direct: match &s.mode {
                Mode::Spooled => None,
                Mode::Direct(why) => Some(why.to_string()),
            },
            upstreams: s.upstreams.clone(),
            events: Vec::new(),
        })
    }
}

enum Op {
    /// A new run of a job: replaces the row and forgets the old run's events.
    Begin(Box<Row>),
    Save(Box<Row>),
    Event(JobId, usize, Event),
    Delete(JobId),
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// A handle on the store's writer thread (cheap to clone).
#[derive(Debug, Clone)]
pub struct Store {
    tx: Option<mpsc::Sender<Op>>,
}

impl Store {
    /// A store that keeps nothing (tests, benches).
    pub fn none() -> Store {
        Store { tx: None }
    }

    /// Opens (creating, migrating) the store in `dir` and starts its writer thread. Returns
    /// the rows it holds, oldest first.
    pub fn open(dir: &Path) -> (Store, Vec<Row>) {
        let path = dir.join(FILE);
        let (conn, rows) = match open_db(&path).and_then(|c| load(&c, &path).map(|r| (c, r))) {
            Ok(x) => x,
            Err(e) => {
                let aside = path.with_extension(format!(
                    "sqlite.unusable-{}",
                    time::OffsetDateTime::now_utc().unix_timestamp()
                ));
                tracing::error!(error = %e, aside = %aside.display(), "the job store cannot be used: moved aside, starting a new one (job history is lost)");
                let _ = std::fs::rename(&path, &aside);
                for ext in ["sqlite-wal", "sqlite-shm"] {
                    let _ = std::fs::remove_file(path.with_extension(ext));
                }
                match open_db(&path) {
                    Ok(c) => (c, Vec::new()),
                    Err(e) => {
                        tracing::error!(error = %e, "no job store: history will not survive a restart");
                        return (Store::none(), Vec::new());
                    }
                }
            }
        };
        let (tx, rx) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("job-store".into())
            .spawn(move || writer(conn, path, rx));
        match spawned {
            Ok(_) => (Store { tx: Some(tx) }, rows),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the job store thread");
                (Store::none(), rows)
            }
        }
    }

    fn send(&self, op: Op) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(op);
        }
    }

    pub(super) fn begin(&self, job: &Job) {
        self.send(Op::Begin(Box::new(Row::of(job))));
    }

    pub(super) fn save(&self, job: &Job) {
        self.send(Op::Save(Box::new(Row::of(job))));
    }

    pub(super) fn event(&self, id: JobId, seq: usize, e: Event) {
        self.send(Op::Event(id, seq, e));
    }

    pub(super) fn delete(&self, id: JobId) {
        self.send(Op::Delete(id));
    }

    /// Waits until everything sent so far is committed.
    pub async fn flush(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Op::Flush(tx));
        let _ = rx.await;
    }
}

fn sqlite(path: &Path) -> impl FnOnce(rusqlite::Error) -> Error + '_ {
    move |source| Error::Sqlite {
        path: path.to_owned(),
        source,
    }
}

fn open_db(path: &Path) -> Result<Connection, Error> {
    let mut c = Connection::open(path).map_err(sqlite(path))?;
    c.pragma_update(None, "journal_mode", "WAL")
        .map_err(sqlite(path))?;
    c.pragma_update(None, "synchronous", "NORMAL")
        .map_err(sqlite(path))?;
    c.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(sqlite(path))?;
    let version: i64 = c
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(sqlite(path))?;
    let version = usize::try_from(version).unwrap_or(usize::MAX);
    if version > MIGRATIONS.len() {
        return Err(Error::TooNew {
            path: path.to_owned(),
            found: version,
            known: MIGRATIONS.len(),
        });
    }
    for (i, m) in MIGRATIONS.iter().enumerate().skip(version) {
        let t = c.transaction().map_err(sqlite(path))?;
        t.execute_batch(m).map_err(sqlite(path))?;
        t.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(sqlite(path))?;
        t.commit().map_err(sqlite(path))?;
    }
    Ok(c)
}

fn load(c: &Connection, path: &Path) -> Result<Vec<Row>, Error> {
    let mut rows = Vec::new();
    let mut q = c
        .prepare(
            "SELECT id, query_path, canonical, created_ns, user, state, end_reason, ended_ns,
                    packets, bytes, truncated, direct, upstreams
             FROM jobs ORDER BY created_ns",
        )
        .map_err(sqlite(path))?;
    let mut it = q.query([]).map_err(sqlite(path))?;
    while let Some(r) = it.next().map_err(sqlite(path))? {
        let id: String = r.get(0).map_err(sqlite(path))?;
        let state: String = r.get(5).map_err(sqlite(path))?;
        let ups: String = r.get(12).map_err(sqlite(path))?;
        // A row this program cannot read is skipped, not fatal.
        let (Ok(id), Some(state)) = (id.parse::<JobId>(), State::parse(&state)) else {
            continue;
        };
        rows.push(Row {
            id,
            query_path: r.get(1).map_err(sqlite(path))?,
            canonical: r.get(2).map_err(sqlite(path))?,
            created_ns: r.get::<_, i64>(3).map_err(sqlite(path))?.into(),
            user: r.get(4).map_err(sqlite(path))?,
            state,
            end_reason: r.get(6).map_err(sqlite(path))?,
            ended_ns: r
                .get::<_, Option<i64>>(7)
                .map_err(sqlite(path))?
                .map(i128::from),
            packets: r.get::<_, i64>(8).map_err(sqlite(path))?.max(0) as u64,
            bytes: r.get::<_, i64>(9).map_err(sqlite(path))?.max(0) as u64,
            truncated: r.get(10).map_err(sqlite(path))?,
            direct: r.get(11).map_err(sqlite(path))?,
            upstreams: serde_json::from_str(&ups).unwrap_or_default(),
            events: Vec::new(),
        });
    }
    let mut q = c
        .prepare("SELECT seq, at, who, msg, state FROM events WHERE job = ?1 ORDER BY seq")
        .map_err(sqlite(path))?;
    for row in &mut rows {
        let evs = q
            .query_map([row.id.to_string()], |r| {
                Ok((
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })
            .map_err(sqlite(path))?;
        for ev in evs {
            let (datetime, name, msg, state) = ev.map_err(sqlite(path))?;
            row.events.push(Event {
                datetime,
                name,
                msg,
                state: State::parse(&state).unwrap_or(State::Failed),
            });
        }
    }
    Ok(rows)
}

fn clamp(ns: i128) -> i64 {
    ns.clamp(i64::MIN.into(), i64::MAX.into()) as i64
}

fn apply(t: &rusqlite::Transaction<'_>, op: Op) -> rusqlite::Result<()> {
    match op {
        Op::Begin(row) => {
            t.execute("DELETE FROM events WHERE job = ?1", [row.id.to_string()])?;
            save(t, &row)
        }
        Op::Save(row) => save(t, &row),
        Op::Event(id, seq, e) => t
            .execute(
                "INSERT OR REPLACE INTO events (job, seq, at, who, msg, state)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    id.to_string(),
                    seq as i64,
                    e.datetime,
                    e.name,
                    e.msg,
                    e.state.as_str()
                ],
            )
            .map(drop),
        Op::Delete(id) => {
            t.execute("DELETE FROM events WHERE job = ?1", [id.to_string()])?;
            t.execute("DELETE FROM jobs WHERE id = ?1", [id.to_string()])
                .map(drop)
        }
        Op::Flush(_) => Ok(()),
    }
}

fn save(t: &rusqlite::Transaction<'_>, r: &Row) -> rusqlite::Result<()> {
    t.execute(
        "INSERT OR REPLACE INTO jobs (id, query_path, canonical, created_ns, user, state,
             end_reason, ended_ns, packets, bytes, truncated, direct, upstreams)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![
            r.id.to_string(),
            r.query_path,
            r.canonical,
            clamp(r.created_ns),
            r.user,
            r.state.as_str(),
            r.end_reason,
            r.ended_ns.map(clamp),
            r.packets.min(i64::MAX as u64) as i64,
            r.bytes.min(i64::MAX as u64) as i64,
            r.truncated,
            r.direct,
            serde_json::to_string(&r.upstreams).unwrap_or_else(|_| "[]".into()),
        ],
    )
    .map(drop)
}

/// The writer thread: takes what has queued up, commits it in one transaction.
fn writer(mut conn: Connection, path: PathBuf, rx: mpsc::Receiver<Op>) {
    /// Most operations per transaction.
    const BATCH: usize = 512;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let mut flushed = Vec::new();
        let r = (|| {
            let t = conn.transaction()?;
            for op in batch {
                if let Op::Flush(done) = op {
                    flushed.push(done);
                } else {
                    apply(&t, op)?;
                }
            }
            t.commit()
        })();
        if let Err(e) = r {
            tracing::error!(error = %e, path = %path.display(), "cannot write the job store");
        }
        for done in flushed {
            let _ = done.send(());
        }
    }
}
