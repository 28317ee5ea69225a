//! Test certificates made by the real `openssl` command line: CAs, and leaf certificates
//! (server or client) signed by them, with or without a subjectAltName.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::run_ok;

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct Pair {
    /// Certificate (PEM).
    pub cert: PathBuf,
    /// Private key (PEM, PKCS#8).
    pub key: PathBuf,
}

/// A self-signed CA named `name` in `dir`.
pub fn ca(dir: &Path, name: &str) -> Pair {
    let p = pair(dir, name);
    run_ok(
        Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
            .args(["-subj", &format!("/CN={name}")])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
            .arg("-keyout")
            .arg(&p.key)
            .arg("-out")
            .arg(&p.cert),
    );
    p
}

/// A leaf certificate `name` with subject CN `cn`, signed by `ca`; `san` (e.g.
/// `IP:127.0.0.1`) adds a subjectAltName.
pub fn leaf(dir: &Path, ca: &Pair, name: &str, cn: &str, san: Option<&str>) -> Pair {
    let p = pair(dir, name);
    let csr = dir.join(format!("{name}.csr"));
    run_ok(
        Command::new("openssl")
            .args(["req", "-new", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes"])
            .args(["-subj", &format!("/CN={cn}")])
            .arg("-keyout")
            .arg(&p.key)
            .arg("-out")
            .arg(&csr),
    );
    let ext = dir.join(format!("{name}.ext"));
    let mut text = String::from("basicConstraints=CA:FALSE\n");
    if let Some(s) = san {
        text.push_str(&format!("subjectAltName={s}\n"));
    }
    std::fs::write(&ext, text).unwrap();
    run_ok(
        Command::new("openssl")
            .args(["x509", "-req", "-days", "2", "-in"])
            .arg(&csr)
            .arg("-CA")
            .arg(&ca.cert)
            .arg("-CAkey")
            .arg(&ca.key)
            .args(["-set_serial", &format!("{}", std::process::id())])
            .arg("-extfile")
            .arg(&ext)
            .arg("-out")
            .arg(&p.cert),
    );
    p
}

fn pair(dir: &Path, name: &str) -> Pair {
    Pair {
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
    }
}
