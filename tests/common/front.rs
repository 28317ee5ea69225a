//! The front door's test material: certificates made by `openssl`, password files made by
//! `openssl passwd` and Debian's `htpasswd`, and a real `docket serve` over TLS with them
//! (a [`Server`], killed by PID on drop even when the test fails).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::run_ok;
use super::server::Server;
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

/// `user:password` of one of [`USERS`], for curl's `-u`.
pub fn user(name: &str) -> String {
    let (u, p, _) = USERS.iter().find(|(u, _, _)| *u == name).unwrap();
    format!("{u}:{p}")
}

/// A TLS server over `locals` with passwords ([`USERS`]), returning it; `extra` adds config.
pub fn tls_server(locals: &[(&str, PathBuf)], extra: &str) -> Server {
    tls_server_auth(locals, extra, "max_failures = 1000")
}

/// [`tls_server`] with `auth` as the rest of the `[auth]` table.
pub fn tls_server_auth(locals: &[(&str, PathBuf)], extra: &str, auth: &str) -> Server {
    let dir = TempDir::new().unwrap();
    let ca = Ca::new(&dir.path().join("pki"), "server");
    let (cert, key) = ca.issue("server", "localhost", true, KeyKind::EcSec1);
    let htpasswd = dir.path().join("htpasswd");
    write_htpasswd(&htpasswd);
    let mut conf = format!(
        "{extra}\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n[auth]\nhtpasswd = \"{}\"\n{auth}\n",
        cert.display(),
        key.display(),
        htpasswd.display()
    );
    for (name, path) in locals {
        conf.push_str(&format!(
            "[[local]]\nname = \"{name}\"\npath = \"{}\"\nfollow_symlinks = true\n",
            path.display()
        ));
    }
    Server::launch(dir, &conf, Some(ca.cert.clone()))
}
