//! Wiring of the gateway: opens the spool (removing crash leftovers), builds the registry,
//! indexes the local directories in the background, runs periodic cleanup, binds and serves.
//! The one line `docket listening on http[s]://ADDR/PREFIX` on standard output says it is ready
//! (tests wait for it; nothing sleeps), and so does `READY=1` to systemd when it runs Docket
//! as a `Type=notify` service (`STOPPING=1` when a stop signal arrives; [`crate::notify`]). Upstreams are
//! health-checked in the background from then on ([`crate::upstream::monitor`]). With `[tls]`, SIGHUP reloads the certificate and key
//! (new handshakes get the new pair; live connections are untouched). When the shutdown
//! future completes, [`http::serve`] stops accepting and gives live streams their grace, then
//! the registry stops the jobs still running (recorded as interrupted) and flushes the job
//! store.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::http::{self, AppState};
use crate::jobs::Registry;
use crate::spool::Spool;
use crate::upstream::Upstream;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spool directory is unusable.
    #[error(transparent)]
    Spool(#[from] crate::spool::Error),
    /// A sensor's certificates or key cannot be used.
    #[error("sensor TLS material: {0}")]
    SensorTls(#[from] crate::upstream::sensor_tls::Error),
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("serving failed: {0}")]
    Serve(#[source] std::io::Error),
    /// The certificate, key or client CA cannot be used.
    #[error(transparent)]
    Tls(#[from] crate::http::tls::Error),
    /// The audit log cannot be opened.
    #[error("{0}")]
    Audit(#[source] std::io::Error),
    /// A background thread (a directory's refresher or indexer) cannot be started.
    #[error("cannot start a thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// Runs the gateway until `shutdown` completes.
///
/// # Errors
/// The spool cannot be opened, the address cannot be bound.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    // TLS first: a bad certificate should stop the start before anything else happens.
    let tls = match &config.tls {
        Some(t) => Some(Arc::new(crate::http::tls::Tls::new(t)?)),
        None => None,
    };
    raise_open_files_limit();
    let spool = Spool::open(&config.spool_dir)?;
    let registry = Arc::new(Registry::new(
        config.jobs(),
        &config.local,
        &config.stenographer,
        spool,
        true,
    )?);
    // Each directory is refreshed (and indexed) in the background from the start, so the
    // first query does not wait for it.
    for u in registry.upstreams() {
        let Upstream::Local(u) = u else { continue };
        crate::upstream::local::indexer::start(u).map_err(Error::Thread)?;
    }
    let cleanup_registry = Arc::clone(&registry);
    let (expire_time, expire_space, period) = (
        config.expire_time,
        config.expire_space,
        config.cleanup_period,
    );
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            // Every period, and when asked (the `cleanup` route; Docket-py's forced cleanup).
            tokio::select! {
                _ = tick.tick() => {}
                () = cleanup_registry.cleanup_requested() => {}
            }
            let r = Arc::clone(&cleanup_registry);
            let deleted = tokio::task::spawn_blocking(move || {
                let files = r.spool().cleanup(expire_time, expire_space);
                let freed = files.iter().map(|f| f.len).sum();
                r.metrics().cleanup(files.len() as u64, freed);
                let d: Vec<_> = files.into_iter().map(|f| f.id).collect();
                // Failed jobs' histories are kept as long as captures are (an hour if captures
                // never expire by age).
                let keep_failed = if expire_time.is_zero() {
                    Duration::from_secs(3600)
                } else {
                    expire_time
                };
                r.forget(&d, keep_failed);
                d
            })
            .await
            .unwrap_or_default();
            if !deleted.is_empty() {
                tracing::info!(count = deleted.len(), "spool cleanup deleted captures");
            }
        }
    });
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(Error::Serve)?;
    let state = Arc::new(AppState::new(config.http(), registry).map_err(Error::Audit)?);
    // SIGHUP reloads the certificate; without TLS it is logged and ignored (its default
    // action would end the process).
    let reload = tls.clone();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut hup) => {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    let Some(tls) = &reload else {
                        tracing::info!("SIGHUP: no [tls] to reload; ignored");
                        continue;
                    };
                    match tls.reload() {
                        Ok(()) => tracing::info!("TLS certificate reloaded"),
                        Err(e) => {
                            tracing::error!(error = %e, "TLS reload failed; keeping the old certificate")
                        }
                    }
                }
            });
        }
        Err(e) => {
            tracing::warn!(error = %e, "no SIGHUP handler: certificates cannot be reloaded")
        }
    }
    // Upstreams are checked from now on (`readyz`, the metrics, WARN when one goes down).
    tokio::spawn(Arc::clone(&state.monitor).run(config.health_period));
    let scheme = if tls.is_some() { "https" } else { "http" };
    let listening = format!(
        "docket listening on {scheme}://{addr}{}",
        state.config.prefix
    );
    println!("{listening}");
    // Under systemd (`Type=notify`), the same moment: `systemctl start` returns once Docket
    // answers, not when the process has merely started. Without `NOTIFY_SOCKET`, nothing.
    if let Err(e) = crate::notify::send(crate::notify::Notice::Ready, &listening) {
        tracing::warn!(error = %e, "cannot tell the service manager that Docket is ready");
    }
    let registry = Arc::clone(&state.registry);
    let shutdown = async {
        shutdown.await;
        if let Err(e) = crate::notify::send(
            crate::notify::Notice::Stopping,
            "stopping: live streams finish within the grace",
        ) {
            tracing::warn!(error = %e, "cannot tell the service manager that Docket stops");
        }
    };
    http::serve(listener, state, tls, shutdown)
        .await
        .map_err(Error::Serve)?;
    // Streams have finished or been cut: jobs still running are stopped and recorded as
    // interrupted, and the job store is flushed.
    registry.shutdown(JOBS_STOP_WAIT).await;
    // What the directories learned since their catalogs were last written is kept — within a
    // bound: an index directory on a stalled file system must not hold the process (the
    // catalog is then rebuilt from the index files at the next start).
    let catalogs = async {
        for u in registry.upstreams() {
            if let Upstream::Local(u) = u {
                let u = Arc::clone(u);
                let _ = tokio::task::spawn_blocking(move || u.save_catalog_now()).await;
            }
        }
    };
    if tokio::time::timeout(JOBS_STOP_WAIT, catalogs)
        .await
        .is_err()
    {
        tracing::warn!("shutdown: the directories' catalogs were not all written in time");
    }
    tracing::info!("shutdown: done");
    Ok(())
}

/// Raises the soft limit on open files to the hard limit: a query over a directory keeps one
/// file open per capture file in its window (thousands of rotation files), and the default
/// soft limit (1,024) would fail it (the upstream fails then, rather than answer in part).
fn raise_open_files_limit() {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on this process with a valid, initialised struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < l.rlim_max {
            l.rlim_cur = l.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
                tracing::warn!("cannot raise the open files limit");
            }
        }
    }
}

/// How long stopped jobs may take to record their end at shutdown.
const JOBS_STOP_WAIT: Duration = Duration::from_secs(10);
