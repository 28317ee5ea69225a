//! The configuration file (`conf/docket.toml`): a serde `RawConfig` with a documented default
//! for every key, validated once into `Config`. Modules take `&Config` (or their part); nothing
//! reads the environment. Relative paths in the file are resolved against the file's directory,
//! so the sample configuration works from any working directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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
    /// Write each job's capture to the spool. Default true; `false` (stream straight to clients)
    /// is refused for now.
    pub spool: bool,
    /// Dedup quantum in seconds: windows are widened to multiples of it. Default 60.
    pub time_window: u64,
    /// Window start when a request gives no `after`, in seconds before now. Default 86400.
    pub long_ago: u64,
    /// Jobs merging at once; more wait in a queue. Default 4.
    pub max_jobs: usize,
    /// Jobs waiting beyond `max_jobs` before new ones are refused (503). Default 64.
    pub max_queued: usize,
    /// Seconds since last use after which a spool file is deleted (0: never). Default 172800.
    pub expire_time: u64,
    /// Free-space target in bytes: cleanup deletes least recently used files until this much is
    /// free (0: off). Default 500 MiB.
    pub expire_space: u64,
    /// Minimum free bytes on the spool's file system to admit a new job (507 below). Default
    /// 200 MiB.
    pub free_bytes: u64,
    /// Seconds between periodic cleanups. Default 3600.
    pub cleanup_period: u64,
    /// Global cap on a job's result in bytes, whatever the request asks (0: none). Default 0.
    pub limit_bytes: u64,
    /// Global cap on a job's result in packets (0: none). Default 0.
    pub limit_packets: u64,
    /// Local capture directories, each one upstream ("sensor").
    pub local: Vec<RawLocal>,
}

/// One `[[local]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLocal {
    /// Sensor name, as used by `sensor/<name>`.
    pub name: String,
    /// Directory of pcap/pcapng files.
    pub path: PathBuf,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            listen: "127.0.0.1:8080".into(),
            prefix: "/app/docket/".into(),
            spool_dir: "/var/spool/docket".into(),
            spool: true,
            time_window: 60,
            long_ago: 86_400,
            max_jobs: 4,
            max_queued: 64,
            expire_time: 172_800,
            expire_space: 500 << 20,
            free_bytes: 200 << 20,
            cleanup_period: 3600,
            limit_bytes: 0,
            limit_packets: 0,
            local: Vec::new(),
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
    /// Spool expiry by age, seconds (0 = off).
    pub expire_time: u64,
    /// Spool free-space target, bytes (0 = off).
    pub expire_space: u64,
    /// Admission threshold, bytes.
    pub free_bytes: u64,
    /// Cleanup period, seconds.
    pub cleanup_period: u64,
    /// Global result caps (0 = none).
    pub limit_bytes: u64,
    /// Global result caps (0 = none).
    pub limit_packets: u64,
    /// Local directories, in configuration order (the merge's input order).
    pub local: Vec<LocalDir>,
}

/// A local capture directory upstream.
#[derive(Debug, Clone)]
pub struct LocalDir {
    /// Sensor name.
    pub name: String,
    /// Directory (resolved).
    pub path: PathBuf,
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
        if !raw.spool {
            // Streaming without a spool file (bounded channels to each client) is not built
            // yet; refusing is better than silently spooling anyway.
            return Err(invalid(
                "spool",
                "`spool = false` is not supported yet".into(),
            ));
        }
        if raw.max_jobs == 0 {
            return Err(invalid("max_jobs", "must be at least 1".into()));
        }
        let mut local = Vec::new();
        for (i, l) in raw.local.iter().enumerate() {
            let key = format!("local[{i}]");
            if l.name.is_empty()
                || !l
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
            {
                return Err(invalid(
                    &key,
                    format!("sensor name {:?} must be [A-Za-z0-9_.-]+", l.name),
                ));
            }
            if local.iter().any(|d: &LocalDir| d.name == l.name) {
                return Err(invalid(
                    &key,
                    format!("sensor name {:?} is used twice", l.name),
                ));
            }
            let p = resolve(&l.path);
            if !p.is_dir() {
                return Err(invalid(&key, format!("{} is not a directory", p.display())));
            }
            local.push(LocalDir {
                name: l.name.clone(),
                path: p,
            });
        }
        Ok(Config {
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
            cleanup_period: raw.cleanup_period,
            limit_bytes: raw.limit_bytes,
            limit_packets: raw.limit_packets,
            local,
        })
    }
}
