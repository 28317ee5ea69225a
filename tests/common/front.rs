//! The front door's test harness: certificates made by `openssl`, password files made by
//! `openssl passwd` and Debian's `htpasswd`, a real `docket serve` over TLS, and curl as the
//! client. Every process is killed by PID on drop, even when the test fails.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::run_ok;
use tempfile::TempDir;

/// The users every password file of these tests holds: (user, password, how it was hashed).
pub const USERS: &[(&str, &str, &str)] = &[
    ("alice", "apr1-secret", "apr1"),
    ("bob", "bcrypt-secret", "bcrypt"),
    ("carol", "sha-secret", "sha"),
];

/// Writes an htpasswd file with [`USERS`]: alice by `openssl passwd -apr1`, bob by
/// `htpasswd -B`, carol by `htpasswd -s`.
pub fn write_htpasswd(path: &Path) {
    let mut text = String::new();
    for (user, pw, kind) in USERS {
        let line = match *kind {
            "apr1" => {
                let h = run_ok(Command::new("openssl").args(["passwd", "-apr1", pw]));
                format!("{user}:{}", String::from_utf8(h).unwrap().trim())
            }
            "bcrypt" => {
                String::from_utf8(run_ok(Command::new("htpasswd").args(["-nbB", user, pw])))
                    .unwrap()
                    .trim()
                    .to_owned()
            }
            "sha" => String::from_utf8(run_ok(Command::new("htpasswd").args(["-nbs", user, pw])))
                .unwrap()
                .trim()
                .to_owned(),
            _ => unreachable!(),
        };
        text.push_str(&line);
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

/// Key format of the server key.
#[derive(Clone, Copy, Debug)]
pub enum KeyKind {
    /// RSA, PKCS#8 (`BEGIN PRIVATE KEY`).
    RsaPkcs8,
    /// RSA, PKCS#1 (`BEGIN RSA PRIVATE KEY`).
    RsaPkcs1,
    /// P-256, SEC1 (`BEGIN EC PRIVATE KEY`).
    EcSec1,
}

/// A certificate authority made by openssl in `dir`.
pub struct Ca {
    /// CA certificate (PEM).
    pub cert: PathBuf,
    key: PathBuf,
    dir: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    run_ok(Command::new("openssl").current_dir(dir).args(args));
}

impl Ca {
    /// A new self-signed CA named `name`.
    pub fn new(dir: &Path, name: &str) -> Ca {
        std::fs::create_dir_all(dir).unwrap();
        let key = format!("{name}-ca.key");
        let cert = format!("{name}-ca.pem");
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &cert,
                "-days",
                "2",
                "-subj",
                &format!("/CN={name} test CA"),
            ],
        );
        Ca {
            cert: dir.join(cert),
            key: dir.join(key),
            dir: dir.to_owned(),
        }
    }

    /// Issues a certificate: `server` (for 127.0.0.1 and localhost) or client, with the given
    /// key kind. Returns (cert, key) paths.
    pub fn issue(&self, stem: &str, cn: &str, server: bool, kind: KeyKind) -> (PathBuf, PathBuf) {
        let d = &self.dir;
        let key = format!("{stem}.key");
        match kind {
            KeyKind::RsaPkcs8 => openssl(
                d,
                &[
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    "rsa_keygen_bits:2048",
                    "-out",
                    &key,
                ],
            ),
            KeyKind::RsaPkcs1 => {
                openssl(
                    d,
                    &[
                        "genpkey",
                        "-algorithm",
                        "RSA",
                        "-pkeyopt",
                        "rsa_keygen_bits:2048",
                        "-out",
                        &format!("{stem}.p8"),
                    ],
                );
                openssl(
                    d,
                    &[
                        "rsa",
                        "-traditional",
                        "-in",
                        &format!("{stem}.p8"),
                        "-out",
                        &key,
                    ],
                );
            }
            KeyKind::EcSec1 => openssl(
                d,
                &[
                    "ecparam",
                    "-name",
                    "prime256v1",
                    "-genkey",
                    "-noout",
                    "-out",
                    &key,
                ],
            ),
        }
        let ext = if server {
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        } else {
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n"
        };
        std::fs::write(d.join(format!("{stem}.ext")), ext).unwrap();
        openssl(
            d,
            &[
                "req",
                "-new",
                "-key",
                &key,
                "-out",
                &format!("{stem}.csr"),
                "-subj",
                &format!("/O=Docket tests/CN={cn}"),
            ],
        );
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{stem}.csr"),
                "-CA",
                self.cert.to_str().unwrap(),
                "-CAkey",
                self.key.to_str().unwrap(),
                "-CAcreateserial",
                "-out",
                &format!("{stem}.pem"),
                "-days",
                "2",
                "-extfile",
                &format!("{stem}.ext"),
            ],
        );
        (d.join(format!("{stem}.pem")), d.join(key))
    }
}

/// A running `docket serve`, killed (by PID) when dropped.
pub struct Front {
    /// The process.
    pub child: Child,
    /// `https://127.0.0.1:PORT/app/docket/` (or http).
    pub base: String,
    /// The test's directory (config, certificates, spool, downloads).
    pub dir: TempDir,
    /// The CA that signed the server certificate (curl's `--cacert`), if TLS.
    pub ca: Option<PathBuf>,
}

impl Front {
    /// Starts Docket in `dir` with `conf` (TOML; `listen`, `spool_dir` and `free_bytes` are
    /// added) and waits for its readiness line.
    pub fn start(dir: TempDir, conf: &str, ca: Option<PathBuf>) -> Front {
        let spool = dir.path().join("spool");
        let full = format!(
            "listen = \"127.0.0.1:0\"\nspool_dir = \"{}\"\nfree_bytes = 0\n{conf}\n",
            spool.display()
        );
        let conf_path = dir.path().join("docket.toml");
        std::fs::write(&conf_path, full).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_docket"))
            .args(["serve", "-c"])
            .arg(&conf_path)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim()
            .strip_prefix("docket listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Front {
            child,
            base,
            dir,
            ca,
        }
    }

    /// The URL of `rest` under the prefix.
    pub fn url(&self, rest: &str) -> String {
        format!("{}{rest}", self.base)
    }

    /// A curl command trusting the test CA.
    pub fn curl(&self) -> Command {
        let mut c = Command::new("curl");
        c.args(["-sS", "--max-time", "60"]);
        if let Some(ca) = &self.ca {
            c.arg("--cacert").arg(ca);
        }
        c
    }

    /// Runs curl on `rest` with `extra` arguments; returns (status, body). Status 0 means curl
    /// got no HTTP answer (e.g. the TLS handshake was refused).
    pub fn get(&self, rest: &str, extra: &[&str]) -> (u16, Vec<u8>) {
        let out = self
            .dir
            .path()
            .join(format!("body-{}", super::server::rand_suffix()));
        let o = self
            .curl()
            .arg("-o")
            .arg(&out)
            .args(["-w", "%{http_code}"])
            .args(extra)
            .arg(self.url(rest))
            .output()
            .unwrap();
        let code = String::from_utf8_lossy(&o.stdout).parse().unwrap_or(0);
        let body = std::fs::read(&out).unwrap_or_default();
        let _ = std::fs::remove_file(&out);
        (code, body)
    }

    /// `-u user:password` for curl.
    pub fn user(name: &str) -> String {
        let (u, p, _) = USERS.iter().find(|(u, _, _)| *u == name).unwrap();
        format!("{u}:{p}")
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TLS server over `locals` with passwords ([`USERS`]), returning it; `extra` adds config.
pub fn tls_server(locals: &[(&str, PathBuf)], extra: &str) -> Front {
    let dir = TempDir::new().unwrap();
    let ca = Ca::new(&dir.path().join("pki"), "server");
    let (cert, key) = ca.issue("server", "localhost", true, KeyKind::EcSec1);
    let htpasswd = dir.path().join("htpasswd");
    write_htpasswd(&htpasswd);
    let mut conf = format!(
        "{extra}\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n[auth]\nhtpasswd = \"{}\"\nmax_failures = 1000\n",
        cert.display(),
        key.display(),
        htpasswd.display()
    );
    for (name, path) in locals {
        conf.push_str(&format!(
            "[[local]]\nname = \"{name}\"\npath = \"{}\"\n",
            path.display()
        ));
    }
    Front::start(dir, &conf, Some(ca.cert.clone()))
}
