//! The configuration file (`conf/docket.toml`): a serde `RawConfig` with a documented default
//! for every key, validated once into `Config`. Modules take `&Config` (or their part); nothing
//! reads the environment. Relative paths in the file are resolved against the file's directory,
//! so the sample configuration works from any working directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// A configuration that cannot be used, naming the file and key.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema (unknown key, wrong type...).
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line.
        source: Box<toml::de::Error>,
    },
    /// A value is out of range or inconsistent.
    #[error("{path}: key `{key}`: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The key at fault.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// The file as written. Every field has a default, so an empty file is a valid configuration.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawConfig {
    /// Address and port to listen on. Default `127.0.0.1:8080`.
    pub listen: String,
    /// URL prefix of every route. Default `/app/docket/`.
    pub prefix: String,
    /// Directory of the spool (merged captures of jobs). Default `/var/spool/docket`.
    pub spool_dir: PathBuf,
    /// Directory of the local directories' capture indexes (one subdirectory per sensor).
    /// Default: beside the spool, `<spool_dir>-index`. Deleting it is safe: indexes are rebuilt.
    pub index_dir: Option<PathBuf>,
    /// Write each job's capture to the spool. Default true; `false`: stream straight to the
    /// clients attached (the slowest paces the job), keep nothing, and admit jobs whatever the
    /// spool disk's free space.
    pub spool: bool,
    /// Dedup quantum in seconds: windows are widened to multiples of it. Default 60.
    pub time_window: u64,
    /// Window start when a request gives no `after`, in seconds before now. Default 86400.
    pub long_ago: u64,
    /// Jobs merging at once; more wait in a queue. Default 4.
    pub max_jobs: usize,
    /// Jobs waiting beyond `max_jobs` before new ones are refused (503). Default 64.
    pub max_queued: usize,
    /// Time since last use after which a spool file is deleted (0: never): seconds, or a
    /// duration such as `"2d"`. Default 2 days.
    #[serde(deserialize_with = "duration::de")]
    pub expire_time: Duration,
    /// Free-space target in bytes: cleanup deletes least recently used files until this much is
    /// free (0: off). Default 500 MiB.
    pub expire_space: u64,
    /// Minimum free bytes on the spool's file system to admit a new job (507 below). Default
    /// 200 MiB.
    pub free_bytes: u64,
    /// Time between periodic cleanups (seconds or `"1h"`). Default 1 hour.
    #[serde(deserialize_with = "duration::de")]
    pub cleanup_period: Duration,
    /// Time between background health checks of every upstream (`/readyz`, the metrics, and
    /// the WARN line of a sensor going down). Default 30 s.
    #[serde(deserialize_with = "duration::de")]
    pub health_period: Duration,
    /// On SIGTERM/SIGINT, how long live streams may take to finish before they are cut at a
    /// record boundary (seconds or `"30s"`). Default 30 s.
    #[serde(deserialize_with = "duration::de")]
    pub shutdown_grace: Duration,
    /// Global cap on a job's result in bytes, whatever the request asks (0: none). Default 0.
    pub limit_bytes: u64,
    /// Global cap on a job's result in packets (0: none). Default 0.
    pub limit_packets: u64,
    /// A new job whose estimated answer (from the indexes) is larger than this is refused
    /// with 413 unless the request says `ignore-weight` (0: no check). Default 2 GiB.
    pub max_estimated_bytes: u64,
    /// Local capture directories, each one upstream ("sensor").
    pub local: Vec<RawLocal>,
    /// Stenographer sensors, each one upstream.
    pub stenographer: Vec<RawStenographer>,
    /// `[tls]`: HTTPS. Absent: plain HTTP.
    pub tls: Option<RawTls>,
    /// `[auth]`: users. Absent: no authentication.
    pub auth: RawAuth,
    /// `[audit]`: the audit log. Absent: none.
    pub audit: RawAudit,
    /// `[http]`: connection limits and proxies.
    pub http: RawHttp,
}

/// The `[tls]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA certificates that client certificates are verified against (mTLS). Absent: no
    /// client certificates are asked for.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// With `client_ca`: refuse connections without a valid client certificate. Default false
    /// (a certificate is asked for, and users without one log in with a password).
    #[serde(default)]
    pub require_client_cert: bool,
}

/// The `[auth]` table.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawAuth {
    /// htpasswd file (apr1, bcrypt, `{SHA}`, crypt entries). Absent: no password login.
    pub htpasswd: Option<PathBuf>,
    /// Realm named in `WWW-Authenticate`. Default `Docket`.
    pub realm: String,
    /// Failed logins from one client address within `failure_window` seconds before it is
    /// refused with 429 until the window ends. Default 10.
    pub max_failures: u32,
    /// The failure window (seconds or `"1m"`). Default 60 s.
    #[serde(deserialize_with = "duration::de")]
    pub failure_window: Duration,
    /// Users who may delete any job (everyone else deletes only their own). Default none.
    pub admins: Vec<String>,
    /// Whether every user sees every job in listings (`/jobs`, `/status`, `/ids`, `/urls`,
    /// the UI), as in ROCK's single-team use. Default true; false shows users their own jobs
    /// (admins see all).
    pub share_jobs: bool,
}

impl Default for RawAuth {
    fn default() -> Self {
        RawAuth {
            htpasswd: None,
            realm: "Docket".into(),
            max_failures: 10,
            failure_window: Duration::from_secs(60),
            admins: Vec::new(),
            share_jobs: true,
        }
    }
}

/// The `[audit]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawAudit {
    /// File the audit lines are appended to. Absent: no audit log.
    pub path: Option<PathBuf>,
}

/// The `[http]` table.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawHttp {
    /// Time a client has to send its request headers (and finish a TLS handshake) before it
    /// is cut off (seconds or `"30s"`). Default 30 s.
    #[serde(deserialize_with = "duration::de")]
    pub header_timeout: Duration,
    /// Connections served at once; more wait in the kernel's accept queue. Default 1024.
    /// At most half of them may be connections that have not yet made an authenticated
    /// request: past that, the oldest such connection is closed for the new one.
    pub max_connections: usize,
    /// Proxy addresses whose `X-Forwarded-For` is believed. Default none.
    pub trusted_proxies: Vec<String>,
    /// A connection (HTTP/1.1 keep-alive or HTTP/2) with no request in flight for this long
    /// is closed. Default 60 s. One that has not made an authenticated request is closed
    /// after `header_timeout` instead.
    #[serde(deserialize_with = "duration::de")]
    pub idle_timeout: Duration,
    /// `metrics` answers without a login (for a Prometheus scraper that has no
    /// credentials). Default false: behind the same authentication as every route.
    pub metrics_open: bool,
}

impl Default for RawHttp {
    fn default() -> Self {
        RawHttp {
            header_timeout: Duration::from_secs(30),
            max_connections: 1024,
            trusted_proxies: Vec::new(),
            idle_timeout: Duration::from_secs(60),
            metrics_open: false,
        }
    }
}

/// One `[[stenographer]]` table: Docket-py's `STENOGRAPHER_INSTANCES` entry (`host`, `sensor`,
/// `port`, `key`, `cert`, `ca`), plus timeouts in seconds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStenographer {
    /// Sensor name, as used by `sensor/<name>` (Docket-py: `sensor`).
    #[serde(alias = "sensor")]
    pub name: String,
    /// Address or DNS name of the sensor; its certificate must name it (SAN, or CN for the
    /// extension-less certificates of `stenokeys.sh`).
    pub host: String,
    /// HTTPS port. Default 1234.
    #[serde(default = "default_steno_port")]
    pub port: u16,
    /// Client certificate (PEM) presented to the sensor.
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The CA (PEM) that signed the sensor's certificate; nothing else is trusted.
    pub ca: PathBuf,
    /// Seconds to connect and finish the TLS handshake. Default 10.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: u64,
    /// Seconds from request to response headers. Default 300 (a sensor reads its indexes first).
    #[serde(default = "default_first_byte_timeout")]
    pub first_byte_timeout: u64,
    /// Seconds of silence within a response before the sensor is given up. Default 120.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: u64,
    /// Seconds for the whole answer (0: none). Default 1200.
    #[serde(default = "default_total_timeout")]
    pub total_timeout: u64,
    /// Seconds after which the sensor itself ends a query with a clean 200 (Stenographer: 15
    /// minutes); an answer ending near it is flagged "possibly truncated". Default 900.
    #[serde(default = "default_server_limit")]
    pub server_limit: u64,
    /// Seconds by which the window asked of the sensor is widened on both sides (Stenographer
    /// selects whole files by time); Docket gates packets to the exact window. Default 60.
    #[serde(default = "default_slack")]
    pub slack: u64,
    /// Seconds to wait for `/debug/stats`. Default 3.
    #[serde(default = "default_stats_timeout")]
    pub stats_timeout: u64,
}

fn default_steno_port() -> u16 {
    1234
}
fn default_connect_timeout() -> u64 {
    10
}
fn default_first_byte_timeout() -> u64 {
    300
}
fn default_idle_timeout() -> u64 {
    120
}
fn default_total_timeout() -> u64 {
    1200
}
fn default_server_limit() -> u64 {
    900
}
fn default_slack() -> u64 {
    60
}
fn default_stats_timeout() -> u64 {
    3
}

/// One `[[local]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLocal {
    /// Sensor name, as used by `sensor/<name>`.
    pub name: String,
    /// Directory of pcap/pcapng files. Missing at start: a warning, and jobs fail with that
    /// reason until it appears (an unmounted share must not take the gateway down).
    pub path: PathBuf,
    /// Subdirectories read below `path` (Suricata's multi mode writes one per thread).
    #[serde(default = "default_max_depth")]
    pub max_depth: usize,
    /// Follow symbolic links that lead outside `path` (links within it are always followed).
    #[serde(default)]
    pub follow_symlinks: bool,
    /// File names that carry the start epoch of a rotation, `{epoch}` marking the seconds:
    /// files outside a query's window are skipped without being read.
    #[serde(default = "default_epoch_names")]
    pub epoch_names: Vec<String>,
    /// Index the directory's capture files (in `index_dir`): a query reads only the slices of
    /// records that can match. Default true.
    #[serde(default = "default_true")]
    pub index: bool,
}

fn default_true() -> bool {
    true
}

fn default_max_depth() -> usize {
    3
}

fn default_epoch_names() -> Vec<String> {
    crate::upstream::local::EpochName::DEFAULTS
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            listen: "127.0.0.1:8080".into(),
            prefix: "/app/docket/".into(),
            spool_dir: "/var/spool/docket".into(),
            index_dir: None,
            spool: true,
            time_window: 60,
            long_ago: 86_400,
            max_jobs: 4,
            max_queued: 64,
            expire_time: Duration::from_secs(172_800),
            expire_space: 500 << 20,
            free_bytes: 200 << 20,
            cleanup_period: Duration::from_secs(3600),
            health_period: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
            limit_bytes: 0,
            limit_packets: 0,
            max_estimated_bytes: 2 << 30,
            local: Vec::new(),
            stenographer: Vec::new(),
            tls: None,
            auth: RawAuth::default(),
            audit: RawAudit::default(),
            http: RawHttp::default(),
        }
    }
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Route prefix, starting and ending with `/`.
    pub prefix: String,
    /// Spool directory (created if missing).
    pub spool_dir: PathBuf,
    /// Spool results to files.
    pub spool: bool,
    /// Dedup quantum, seconds (at least 1).
    pub time_window: u64,
    /// Default window length, seconds.
    pub long_ago: u64,
    /// Concurrent jobs.
    pub max_jobs: usize,
    /// Queue length.
    pub max_queued: usize,
    /// Spool expiry by age (0 = off).
    pub expire_time: Duration,
    /// Spool free-space target, bytes (0 = off).
    pub expire_space: u64,
    /// Admission threshold, bytes.
    pub free_bytes: u64,
    /// Cleanup period, seconds.
    pub cleanup_period: Duration,
    /// Upstream health check period.
    pub health_period: Duration,
    /// How long live streams may finish after a stop signal.
    pub shutdown_grace: Duration,
    /// Global result caps (0 = none).
    pub limit_bytes: u64,
    /// Global result caps (0 = none).
    pub limit_packets: u64,
    /// Estimate over which a new job is refused (0 = off).
    pub max_estimated_bytes: u64,
    /// Local directories, in configuration order (the merge's input order: before sensors).
    pub local: Vec<LocalDir>,
    /// Stenographer sensors, in configuration order (after the local directories).
    pub stenographer: Vec<Stenographer>,
    /// HTTPS, if configured.
    pub tls: Option<TlsConfig>,
    /// Password login, if configured.
    pub auth: AuthConfig,
    /// Audit log file, if configured.
    pub audit_path: Option<PathBuf>,
    /// Header/handshake timeout, seconds (at least 1).
    pub header_timeout: Duration,
    /// Idle connections are closed after this.
    pub idle_timeout: Duration,
    /// Connections served at once (at least 1).
    pub max_connections: usize,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// `metrics` needs no login.
    pub metrics_open: bool,
}

/// Validated `[tls]` (paths resolved; the files are read when the server starts and on SIGHUP).
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// Certificate chain file.
    pub cert: PathBuf,
    /// Key file.
    pub key: PathBuf,
    /// Client CA file.
    pub client_ca: Option<PathBuf>,
    /// Client certificates are mandatory.
    pub require_client_cert: bool,
}

/// Validated `[auth]`.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// htpasswd file.
    pub htpasswd: Option<PathBuf>,
    /// Realm.
    pub realm: String,
    /// Failures allowed per window and client address.
    pub max_failures: u32,
    /// Window, seconds.
    pub failure_window: Duration,
    /// Users who may delete any job.
    pub admins: Vec<String>,
    /// Whether listings show every user's jobs.
    pub share_jobs: bool,
}

impl AuthConfig {
    /// Whether any authentication is configured (password or client certificate): then every
    /// route but `healthz` needs a user.
    pub fn required(&self, tls: Option<&TlsConfig>) -> bool {
        self.htpasswd.is_some() || tls.is_some_and(|t| t.client_ca.is_some())
    }
}

/// A Stenographer sensor upstream: where it is, the TLS material, and its time budget.
#[derive(Debug, Clone)]
pub struct Stenographer {
    /// Sensor name.
    pub name: String,
    /// Address or DNS name.
    pub host: String,
    /// HTTPS port.
    pub port: u16,
    /// Client certificate (PEM), resolved.
    pub cert: PathBuf,
    /// Client key (PEM), resolved.
    pub key: PathBuf,
    /// The sensor's CA (PEM), resolved.
    pub ca: PathBuf,
    /// Connect + TLS handshake.
    pub connect_timeout: Duration,
    /// Request → response headers.
    pub first_byte_timeout: Duration,
    /// Silence within a response.
    pub idle_timeout: Duration,
    /// The whole answer (`None`: unbounded).
    pub total_timeout: Option<Duration>,
    /// The sensor's own cut-off.
    pub server_limit: Duration,
    /// Window widening, seconds.
    pub slack: u64,
    /// `/debug/stats` budget.
    pub stats_timeout: Duration,
}

/// A local capture directory upstream.
#[derive(Debug, Clone)]
pub struct LocalDir {
    /// Sensor name.
    pub name: String,
    /// Directory (resolved).
    pub path: PathBuf,
    /// How the directory's files are laid out.
    pub layout: crate::upstream::local::Layout,
    /// Where its capture indexes live (`None`: not indexed).
    pub index_dir: Option<PathBuf>,
}

impl Config {
    /// Reads and validates a configuration file.
    ///
    /// # Errors
    /// The file cannot be read, does not parse, or a value is invalid.
    pub fn load(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        let raw: RawConfig = toml::from_str(&text).map_err(|source| Error::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        Config::from_raw(raw, path)
    }

    /// Validates a parsed configuration; `path` names it in errors and anchors relative paths.
    ///
    /// # Errors
    /// A value is invalid.
    pub fn from_raw(raw: RawConfig, path: &Path) -> Result<Config, Error> {
        let invalid = |key: &str, message: String| Error::Invalid {
            path: path.to_owned(),
            key: key.into(),
            message,
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_owned()
            } else {
                base.join(p)
            }
        };
        let listen = raw.listen.parse().map_err(|e| {
            invalid(
                "listen",
                format!("{:?} is not an address:port ({e})", raw.listen),
            )
        })?;
        let mut prefix = raw.prefix.clone();
        if !prefix.starts_with('/') {
            prefix.insert(0, '/');
        }
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        if raw.time_window == 0 {
            return Err(invalid("time_window", "must be at least 1 second".into()));
        }
        if raw.max_jobs == 0 {
            return Err(invalid("max_jobs", "must be at least 1".into()));
        }
        let mut names: Vec<&str> = Vec::new();
        let check_name = |key: &str, name: &str, names: &[&str]| -> Result<(), Error> {
            // The query grammar's own rule: a name no `sensor/` clause could ask for is
            // refused here, not at the first query that names it.
            if let Err(e) = crate::query::check_sensor_name(name) {
                return Err(invalid(key, e.message));
            }
            if names.contains(&name) {
                return Err(invalid(key, format!("sensor name {name:?} is used twice")));
            }
            Ok(())
        };
        let mut local = Vec::new();
        for (i, l) in raw.local.iter().enumerate() {
            let key = format!("local[{i}]");
            check_name(&format!("{key}.name"), &l.name, &names)?;
            names.push(&l.name);
            let p = resolve(&l.path);
            if p.exists() && !p.is_dir() {
                return Err(invalid(&key, format!("{} is not a directory", p.display())));
            }
            let epoch_names = l
                .epoch_names
                .iter()
                .map(|n| {
                    crate::upstream::local::EpochName::parse(n).ok_or_else(|| {
                        invalid(&key, format!("epoch_names: {n:?} needs one {{epoch}}"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let spool = resolve(&raw.spool_dir);
            let index_root = raw.index_dir.as_deref().map(resolve).unwrap_or_else(|| {
                let mut name = spool.file_name().unwrap_or_default().to_owned();
                name.push("-index");
                spool.with_file_name(name)
            });
            local.push(LocalDir {
                name: l.name.clone(),
                index_dir: l.index.then(|| index_root.join(&l.name)),
                path: p,
                layout: crate::upstream::local::Layout {
                    max_depth: l.max_depth,
                    follow_symlinks: l.follow_symlinks,
                    epoch_names,
                },
            });
        }
        let mut stenographer = Vec::new();
        for (i, s) in raw.stenographer.iter().enumerate() {
            let key = format!("stenographer[{i}]");
            check_name(&format!("{key}.name"), &s.name, &names)?;
            names.push(&s.name);
            if s.host.is_empty() {
                return Err(invalid(&key, "`host` is empty".into()));
            }
            for (what, p) in [("cert", &s.cert), ("key", &s.key), ("ca", &s.ca)] {
                if !resolve(p).is_file() {
                    return Err(invalid(
                        &format!("{key}.{what}"),
                        format!("{} is not a readable file", resolve(p).display()),
                    ));
                }
            }
            if s.connect_timeout == 0 || s.first_byte_timeout == 0 || s.idle_timeout == 0 {
                return Err(invalid(&key, "timeouts must be at least 1 second".into()));
            }
            let month = 30 * 86_400;
            if [
                s.connect_timeout,
                s.first_byte_timeout,
                s.idle_timeout,
                s.total_timeout,
                s.server_limit,
                s.stats_timeout,
                s.slack,
            ]
            .iter()
            .any(|&t| t > month)
            {
                return Err(invalid(
                    &key,
                    "timeouts and slack must be at most 30 days".into(),
                ));
            }
            stenographer.push(Stenographer {
                name: s.name.clone(),
                host: s.host.clone(),
                port: s.port,
                cert: resolve(&s.cert),
                key: resolve(&s.key),
                ca: resolve(&s.ca),
                connect_timeout: Duration::from_secs(s.connect_timeout),
                first_byte_timeout: Duration::from_secs(s.first_byte_timeout),
                idle_timeout: Duration::from_secs(s.idle_timeout),
                total_timeout: (s.total_timeout > 0).then(|| Duration::from_secs(s.total_timeout)),
                server_limit: Duration::from_secs(s.server_limit),
                slack: s.slack,
                stats_timeout: Duration::from_secs(s.stats_timeout.max(1)),
            });
        }
        let tls = match raw.tls {
            None => None,
            Some(t) => {
                if t.require_client_cert && t.client_ca.is_none() {
                    return Err(invalid(
                        "tls.require_client_cert",
                        "needs `tls.client_ca`".into(),
                    ));
                }
                Some(TlsConfig {
                    cert: resolve(&t.cert),
                    key: resolve(&t.key),
                    client_ca: t.client_ca.as_deref().map(resolve),
                    require_client_cert: t.require_client_cert,
                })
            }
        };
        if raw.auth.realm.contains(['"', '\\']) || raw.auth.realm.chars().any(char::is_control) {
            return Err(invalid(
                "auth.realm",
                "must not contain quotes, backslashes or control characters".into(),
            ));
        }
        if raw.http.header_timeout.is_zero() {
            return Err(invalid("http.header_timeout", "must be at least 1".into()));
        }
        if raw.http.max_connections == 0 {
            return Err(invalid("http.max_connections", "must be at least 1".into()));
        }
        let mut trusted_proxies = Vec::new();
        for p in &raw.http.trusted_proxies {
            trusted_proxies.push(p.parse().map_err(|e| {
                invalid(
                    "http.trusted_proxies",
                    format!("{p:?} is not an IP address ({e})"),
                )
            })?);
        }
        Ok(Config {
            tls,
            auth: AuthConfig {
                htpasswd: raw.auth.htpasswd.as_deref().map(resolve),
                realm: raw.auth.realm,
                max_failures: raw.auth.max_failures,
                failure_window: raw.auth.failure_window.max(Duration::from_secs(1)),
                admins: raw.auth.admins,
                share_jobs: raw.auth.share_jobs,
            },
            audit_path: raw.audit.path.as_deref().map(resolve),
            header_timeout: raw.http.header_timeout,
            idle_timeout: raw.http.idle_timeout.max(Duration::from_secs(1)),
            max_connections: raw.http.max_connections,
            trusted_proxies,
            metrics_open: raw.http.metrics_open,
            listen,
            prefix,
            spool_dir: resolve(&raw.spool_dir),
            spool: raw.spool,
            time_window: raw.time_window,
            long_ago: raw.long_ago,
            max_jobs: raw.max_jobs,
            max_queued: raw.max_queued,
            expire_time: raw.expire_time,
            expire_space: raw.expire_space,
            free_bytes: raw.free_bytes,
            cleanup_period: raw.cleanup_period.max(Duration::from_secs(1)),
            health_period: raw.health_period.max(Duration::from_secs(1)),
            shutdown_grace: raw.shutdown_grace,
            limit_bytes: raw.limit_bytes,
            limit_packets: raw.limit_packets,
            max_estimated_bytes: raw.max_estimated_bytes,
            local,
            stenographer,
        })
    }
}

impl Config {
    /// The query grammar's part: how times are quantised and defaulted.
    pub fn query_config(&self) -> crate::query::QueryConfig {
        crate::query::QueryConfig {
            time_window_secs: self.time_window,
            long_ago_secs: self.long_ago,
        }
    }

    /// The HTTP front's part.
    pub fn http(&self) -> crate::http::HttpConfig {
        crate::http::HttpConfig {
            prefix: self.prefix.clone(),
            auth: self.auth.clone(),
            login_required: self.auth.required(self.tls.as_ref()),
            audit_path: self.audit_path.clone(),
            header_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
            max_connections: self.max_connections,
            trusted_proxies: self.trusted_proxies.clone(),
            metrics_open: self.metrics_open,
            shutdown_grace: self.shutdown_grace,
            query: self.query_config(),
        }
    }

    /// The job registry's part.
    pub fn jobs(&self) -> crate::jobs::JobsConfig {
        crate::jobs::JobsConfig {
            spool: self.spool,
            free_bytes: self.free_bytes,
            max_jobs: self.max_jobs,
            max_queued: self.max_queued,
            limit_bytes: self.limit_bytes,
            limit_packets: self.limit_packets,
            max_estimated_bytes: self.max_estimated_bytes,
            query: self.query_config(),
        }
    }
}

/// Durations in the file: a number of seconds (as every earlier version wrote them) or a
/// humantime string (`"30s"`, `"2h"`, `"1d 12h"`).
mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }

    pub fn de<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Secs(s) => Ok(Duration::from_secs(s)),
            Raw::Text(t) => humantime::parse_duration(&t).map_err(|e| {
                serde::de::Error::custom(format!(
                    "{t:?} is not a duration (seconds, or e.g. \"30s\", \"2h\"): {e}"
                ))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, Error> {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("docket.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(&path)
    }

    /// A sensor name no `sensor/` clause could ask for is refused when the file is loaded.
    #[test]
    fn sensor_names_follow_the_query_grammar() {
        let conf = |name: &str| format!("[[local]]\nname = \"{name}\"\npath = \"/tmp\"\n");
        for bad in [
            "x".repeat(65),
            "...".to_owned(),
            "a/b".to_owned(),
            String::new(),
        ] {
            match load(&conf(&bad)) {
                Err(Error::Invalid { key, message, .. }) => {
                    assert!(key.contains("name"), "{key}");
                    assert!(message.contains("sensor"), "{message}");
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        assert!(load(&conf(&"x".repeat(64))).is_ok());
    }
}
