//! Who is asking: HTTP Basic against an htpasswd file, and the rate limit on failed logins.
//!
//! Owns the parsed htpasswd file. It is re-read when its modification time, size or inode
//! changes (checked on each login, a `stat`), so `htpasswd -B` on the live file takes effect
//! at once; a file that cannot be read keeps the last good copy and is logged.
//!
//! Hash formats, as Apache's `htpasswd` and `openssl passwd` write them: `$apr1$` (Apache
//! MD5, the `unix-crypt` crate), `$2y$`/`$2a$`/`$2b$` (bcrypt, `pwhash`), `{SHA}` (base64 SHA-1,
//! the `sha1` crate) and 13-character DES `crypt` (`pwhash`). Computed hashes are compared in
//! constant time. An unknown user costs what the median known user costs: the password is
//! checked (and the answer discarded) against the entry of median cost in the file, so that a
//! user name cannot be found by timing whatever mix of schemes the file holds. Plain-text
//! entries are refused.
//!
//! Verified credentials are remembered as a keyed SHA-256 (a random key per process) until
//! the file changes, so the UI's once-a-second polling does not run bcrypt (cost 10+ is tens
//! of milliseconds of CPU) on every request; a wrong password never matches a remembered one,
//! and the memory is dropped with the file's old contents.
//!
//! [`Limiter`]: attempts per client address in a fixed window. An attempt is counted before
//! its password is checked and given back when it succeeds, so parallel guesses cannot all be
//! checked before the first failure is counted; over the limit, the address is refused (429)
//! without checking the password until the window ends. Its table is bounded: expired entries
//! are pruned when it grows.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use subtle::ConstantTimeEq;

/// One stored password hash.
#[derive(Debug, Clone)]
enum Hash {
    Apr1 { salt: [u8; 8], full: String },
    Bcrypt(String),
    Sha1([u8; 20]),
    Crypt(String),
}

impl Hash {
    /// Orders schemes by the work a check costs (bcrypt by its cost factor).
    fn cost(&self) -> u32 {
        match self {
            Hash::Sha1(_) => 0,
            Hash::Crypt(_) => 1,
            Hash::Apr1 { .. } => 2,
            Hash::Bcrypt(h) => 10 + h.get(4..6).and_then(|c| c.parse().ok()).unwrap_or(0),
        }
    }

    fn parse(h: &str) -> Option<Hash> {
        if let Some(rest) = h.strip_prefix("$apr1$") {
            let salt = rest.split('$').next()?;
            // htpasswd and openssl always write 8 salt characters.
            return Some(Hash::Apr1 {
                salt: salt.as_bytes().try_into().ok()?,
                full: h.to_owned(),
            });
        }
        if ["$2y$", "$2a$", "$2b$"].iter().any(|p| h.starts_with(p)) {
            return Some(Hash::Bcrypt(h.to_owned()));
        }
        if let Some(b) = h.strip_prefix("{SHA}") {
            let v = base64::engine::general_purpose::STANDARD.decode(b).ok()?;
            return Some(Hash::Sha1(v.try_into().ok()?));
        }
        if h.len() == 13
            && h.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'/')
        {
            return Some(Hash::Crypt(h.to_owned()));
        }
        None
    }

    fn check(&self, password: &str) -> bool {
        match self {
            Hash::Apr1 { salt, full } => {
                let got = unix_crypt::apr1::to_hash_string(
                    unix_crypt::apr1::encode(password.as_bytes(), *salt),
                    *salt,
                );
                got.ct_eq(full.as_bytes()).into()
            }
            // pwhash compares in constant time.
            Hash::Bcrypt(h) => pwhash::bcrypt::verify(password, h),
            Hash::Sha1(d) => {
                use sha1::Digest;
                let got: [u8; 20] = sha1::Sha1::digest(password.as_bytes()).into();
                got.ct_eq(d).into()
            }
            Hash::Crypt(h) => pwhash::unix_crypt::verify(password, h),
        }
    }
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
struct Stamp {
    mtime: Option<SystemTime>,
    len: u64,
    ino: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        mtime: m.modified().ok(),
        len: m.len(),
        ino: m.ino(),
    })
}

#[derive(Debug, Default)]
struct Loaded {
    stamp: Option<Stamp>,
    users: HashMap<String, Hash>,
    /// The entry of median cost: what an unknown user's password is checked against.
    decoy: Option<Hash>,
    /// user → keyed digest of a password that verified against this version of the file.
    verified: HashMap<String, [u8; 32]>,
}

/// Most remembered verifications; the memory is dropped when it is full.
const MAX_VERIFIED: usize = 1024;

/// The htpasswd file, re-read when it changes.
#[derive(Debug)]
pub struct Htpasswd {
    path: PathBuf,
    loaded: Mutex<Loaded>,
    /// Key of the remembered-verification digests.
    key: [u8; 32],
}

/// A bcrypt hash of nothing in particular, checked for unknown users while the file has no
/// entry to take the cost of.
const DUMMY: &str = "$2y$05$abcdefghijklmnopqrstuu5Ud5n5yCmyNbyhAc9xXr2mnyEhv1AFm";

impl Htpasswd {
    /// Opens `path`; the file is read on first use.
    pub fn new(path: PathBuf) -> Htpasswd {
        let mut key = [0u8; 32];
        // SAFETY: getrandom(2) fills at most `key.len()` bytes of a buffer we own.
        let n = unsafe { libc::getrandom(key.as_mut_ptr().cast(), key.len(), 0) };
        if n != key.len() as isize {
            // No randomness: remembering verifications would be keyed predictably; the
            // all-zero key is still a hash, but say so.
            tracing::warn!("getrandom failed; verification memory uses a fixed key");
        }
        Htpasswd {
            path,
            loaded: Mutex::new(Loaded::default()),
            key,
        }
    }

    /// Whether the file can be read now (a missing or unreadable file refuses every login).
    ///
    /// # Errors
    /// Why it cannot.
    pub fn readable(&self) -> std::io::Result<()> {
        std::fs::File::open(&self.path).map(drop)
    }

    /// The password file.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    fn digest(&self, user: &str, password: &str) -> [u8; 32] {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(self.key);
        h.update(user.as_bytes());
        h.update([0]);
        h.update(password.as_bytes());
        h.finalize().into()
    }

    /// Re-reads the file into `l` if it changed.
    fn refresh(&self, l: &mut Loaded) {
        let now = stamp(&self.path);
        if now != l.stamp {
            match std::fs::read_to_string(&self.path) {
                Ok(text) => {
                    let mut users = HashMap::new();
                    for (n, line) in text.lines().enumerate() {
                        let line = line.trim_end_matches('\r');
                        if line.trim().is_empty() || line.starts_with('#') {
                            continue;
                        }
                        let parsed = line
                            .split_once(':')
                            .and_then(|(u, h)| Some((u, Hash::parse(h)?)));
                        match parsed {
                            Some((u, h)) => {
                                users.insert(u.to_owned(), h);
                            }
                            None => tracing::warn!(
                                file = %self.path.display(),
                                line = n + 1,
                                "htpasswd entry skipped: not an apr1, bcrypt, {{SHA}} or crypt hash"
                            ),
                        }
                    }
                    tracing::info!(file = %self.path.display(), users = users.len(), "htpasswd loaded");
                    let mut by_cost: Vec<&Hash> = users.values().collect();
                    by_cost.sort_by_key(|h| h.cost());
                    let decoy = by_cost.get(by_cost.len() / 2).map(|h| (*h).clone());
                    *l = Loaded {
                        stamp: now,
                        users,
                        decoy,
                        verified: HashMap::new(),
                    };
                }
                Err(e) => {
                    tracing::error!(file = %self.path.display(), error = %e, "cannot read htpasswd; keeping the last copy");
                }
            }
        }
    }

    /// Whether `user` / `password` match an entry. CPU-bound (bcrypt): call from a blocking
    /// thread.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        let digest = self.digest(user, password);
        let (hash, version) = {
            let mut l = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
            self.refresh(&mut l);
            if l.verified
                .get(user)
                .is_some_and(|d| bool::from(d.ct_eq(&digest)))
            {
                return true;
            }
            (
                l.users.get(user).cloned().ok_or_else(|| l.decoy.clone()),
                l.stamp,
            )
        };
        // The slow check runs without the lock.
        let ok = match hash {
            Ok(h) => h.check(password),
            // An unknown user: the same work as the median known one, then no.
            Err(Some(decoy)) => {
                let _ = decoy.check(password);
                false
            }
            Err(None) => {
                let _ = pwhash::bcrypt::verify(password, DUMMY);
                false
            }
        };
        if ok {
            let mut l = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
            // Only for the file version it was checked against.
            if l.stamp == version {
                if l.verified.len() >= MAX_VERIFIED {
                    l.verified.clear();
                }
                l.verified.insert(user.to_owned(), digest);
            }
        }
        ok
    }
}

/// `Authorization: Basic` → (user, password).
pub fn parse_basic(header: &str) -> Option<(String, String)> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

/// Failed logins per client address in a fixed window.
#[derive(Debug)]
pub struct Limiter {
    max: u32,
    window: Duration,
    table: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

/// Above this many addresses the table drops expired entries before inserting.
const LIMITER_PRUNE_AT: usize = 4096;

impl Limiter {
    /// At most `max` failures per `window` per address.
    pub fn new(max: u32, window: Duration) -> Limiter {
        Limiter {
            max,
            window,
            table: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a login attempt from `addr` before its password is checked: `Err(wait)` when
    /// the address has used up its attempts in the window. A successful attempt is given back
    /// with [`succeeded`](Self::succeeded).
    pub fn attempt(&self, addr: IpAddr) -> Result<u32, Duration> {
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if t.len() >= LIMITER_PRUNE_AT {
            let w = self.window;
            t.retain(|_, (s, _)| s.elapsed() < w);
        }
        let e = t.entry(addr).or_insert((Instant::now(), 0));
        let elapsed = e.0.elapsed();
        if elapsed >= self.window {
            *e = (Instant::now(), 0);
        } else if e.1 >= self.max {
            return Err(self.window - elapsed);
        }
        e.1 += 1;
        Ok(e.1)
    }

    /// Gives back the attempt of a login that succeeded.
    pub fn succeeded(&self, addr: IpAddr) {
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = t.get_mut(&addr) {
            e.1 = e.1.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_basic() {
        // "alice:pa:ss" — a password may contain colons.
        assert_eq!(
            parse_basic("Basic YWxpY2U6cGE6c3M="),
            Some(("alice".into(), "pa:ss".into()))
        );
        assert_eq!(parse_basic("Bearer x"), None);
    }

    /// Published vectors: OpenSSL's `passwd` manual (apr1), pwhash's tests (DES crypt),
    /// SHA-1("password") in base64.
    #[test]
    fn known_hashes() {
        let cases = [
            ("$apr1$xxxxxxxx$dxHfLAsjHkDRmG83UXe8K0", "password"),
            ("aZGJuE6EXrjEE", "test"),
            ("{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "password"),
            (
                "$2y$05$bvIG6Nmid91Mu9RcmmWZfO5HJIMCT8riNW0hEp8f6/FuA2/mHZFpe",
                "password",
            ),
        ];
        for (h, pw) in cases {
            let parsed = Hash::parse(h).unwrap_or_else(|| panic!("{h} not parsed"));
            assert!(parsed.check(pw), "{h}");
            assert!(!parsed.check("wrong"), "{h}");
        }
        assert!(Hash::parse("plaintext-password").is_none());
        assert!(Hash::parse("$apr1$short$abc").is_none());
        // The unknown-user dummy really costs a bcrypt (a malformed one would return at once).
        assert!(pwhash::bcrypt::hash_with(DUMMY, "x").is_ok());
    }

    /// An unknown user is checked against the entry of median cost, whatever the mix.
    #[test]
    fn the_decoy_is_the_median_entry() {
        let dir = std::env::temp_dir().join(format!("docket-decoy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("htpasswd");
        let sha = "{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=";
        let apr1 = "$apr1$r31.....$HqJZimcKQFAMYayBlzkrA/";
        let bcrypt = "$2y$05$abcdefghijklmnopqrstuu5Ud5n5yCmyNbyhAc9xXr2mnyEhv1AFm";
        for (lines, want) in [
            (vec![("a", apr1), ("s", sha)], 2),
            (vec![("a", apr1), ("s", sha), ("b", bcrypt)], 2),
            (vec![("s", sha), ("b", bcrypt), ("c", bcrypt)], 15),
        ] {
            let text: String = lines.iter().map(|(u, h)| format!("{u}:{h}\n")).collect();
            std::fs::write(&path, text).unwrap();
            let h = Htpasswd::new(path.clone());
            let mut l = h.loaded.lock().unwrap();
            h.refresh(&mut l);
            assert_eq!(l.decoy.as_ref().map(Hash::cost), Some(want), "{lines:?}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn limiter_counts_attempts_before_checking_and_gives_back_successes() {
        let l = Limiter::new(2, Duration::from_secs(3600));
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(l.attempt(a), Ok(1));
        l.succeeded(a);
        // Two attempts in flight at once: a third is refused before any is checked.
        assert_eq!(l.attempt(a), Ok(1));
        assert_eq!(l.attempt(a), Ok(2));
        assert!(l.attempt(a).is_err());
        let b: IpAddr = "::1".parse().unwrap();
        assert_eq!(l.attempt(b), Ok(1));
    }
}
