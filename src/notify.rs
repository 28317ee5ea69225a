//! Telling systemd how the service stands (`sd_notify(3)`): `READY=1` once Docket listens,
//! `STOPPING=1` at a stop signal, each with a `STATUS=` line, as one datagram to the socket
//! named by `NOTIFY_SOCKET` (a path, or `@name` for a Linux abstract socket).
//!
//! Written here rather than taken from a crate because the notification must never stop the
//! server: the datagram is sent without blocking (a full or unread socket drops it with a
//! warning instead of hanging the async thread that sends it), and abstract socket names work.
//! Without `NOTIFY_SOCKET` (not under systemd, or not `Type=notify`) nothing is sent.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// What the service manager is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// Listening: the service is up.
    Ready,
    /// A stop signal came: the service is stopping.
    Stopping,
}

/// Sends `notice` with `status` to the service manager, if there is one (see the module
/// documentation).
///
/// # Errors
/// `NOTIFY_SOCKET` names no usable socket, or the datagram could not be sent at once.
pub fn send(notice: Notice, status: &str) -> io::Result<()> {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(());
    };
    let addr = address(target.as_encoded_bytes())?;
    let state = match notice {
        Notice::Ready => "READY=1",
        Notice::Stopping => "STOPPING=1",
    };
    // One line per assignment; a status cannot carry a newline into a second assignment.
    let status: String = status.chars().filter(|c| *c != '\n').collect();
    let msg = format!("{state}\nSTATUS={status}\n");
    let sock = UnixDatagram::unbound()?;
    sock.set_nonblocking(true)?;
    let sent = sock.send_to_addr(msg.as_bytes(), &addr)?;
    if sent == msg.len() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "notification cut short",
        ))
    }
}

/// The socket address of a `NOTIFY_SOCKET` value: `@name` is abstract, anything else a path.
fn address(value: &[u8]) -> io::Result<SocketAddr> {
    match value.split_first() {
        None => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "NOTIFY_SOCKET is empty",
        )),
        Some((b'@', name)) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name)
        }
        Some(_) => {
            use std::os::unix::ffi::OsStrExt;
            SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(value))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abstract_names_and_paths_are_told_apart() {
        use std::os::linux::net::SocketAddrExt;
        let a = address(b"@docket-test").unwrap();
        assert_eq!(a.as_abstract_name(), Some(&b"docket-test"[..]));
        let p = address(b"/run/systemd/notify").unwrap();
        assert_eq!(
            p.as_pathname(),
            Some(std::path::Path::new("/run/systemd/notify"))
        );
        assert!(address(b"").is_err());
    }

    #[test]
    fn a_full_socket_drops_the_notice_instead_of_blocking() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("notify.sock");
        let _unread = UnixDatagram::bind(&path).unwrap();
        let addr = address(path.as_os_str().as_encoded_bytes()).unwrap();
        let sock = UnixDatagram::unbound().unwrap();
        sock.set_nonblocking(true).unwrap();
        // Fill the receiver's queue (bounded: the kernel's queue is far smaller).
        let mut full = false;
        for _ in 0..100_000 {
            if let Err(e) = sock.send_to_addr(b"READY=1\n", &addr) {
                assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
                full = true;
                break;
            }
        }
        assert!(full, "the queue filled");
        temp_env(&path, || {
            let r = send(Notice::Ready, "docket listening");
            assert_eq!(r.unwrap_err().kind(), io::ErrorKind::WouldBlock);
        });
    }

    /// Runs `f` with `NOTIFY_SOCKET` set to `path` (tests in this module only).
    fn temp_env(path: &std::path::Path, f: impl FnOnce()) {
        // No other test reads or writes NOTIFY_SOCKET.
        std::env::set_var("NOTIFY_SOCKET", path);
        f();
        std::env::remove_var("NOTIFY_SOCKET");
    }
}
