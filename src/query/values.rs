//! Parsers for the value of each clause, shared by the URL, JSON and form front ends so that
//! every input type accepts and rejects exactly the same texts with the same errors.
//!
//! Each parser takes the clause name (for the error) and the text, and returns the value in
//! its normal form: IP addresses as `IpAddr`, nets with host bits cleared, numbers range-checked.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::time::scaled;
use super::{Error, Net, OutputKind};

/// Longest raw BPF expression accepted, in bytes.
pub const MAX_BPF_LEN: usize = 1024;
/// Longest sensor name accepted, in characters.
pub const MAX_SENSOR_LEN: usize = 64;

/// `s` if it is 1..=`max_len` ASCII digits, so that `parse` cannot see signs or overflow.
fn digits(s: &str, max_len: usize) -> Option<&str> {
    (!s.is_empty() && s.len() <= max_len && s.bytes().all(|b| b.is_ascii_digit())).then_some(s)
}

/// An IPv4 or IPv6 address (no zone, no brackets).
pub(crate) fn host(clause: &str, text: &str) -> Result<IpAddr, Error> {
    text.parse::<IpAddr>().map_err(|_| {
        Error::new(
            clause,
            text,
            format!("{clause} {text}: not an IPv4 or IPv6 address"),
        )
    })
}

/// A net from its address and its prefix length or (IPv4 only) dotted mask; the address is
/// reduced to the network address.
pub(crate) fn net(clause: &str, addr: &str, mask: &str) -> Result<Net, Error> {
    let whole = format!("{addr}/{mask}");
    let err = |why: String| Error::new(clause, &whole, format!("{clause} {whole}: {why}"));
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| err(format!("{addr} is not an IPv4 or IPv6 address")))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = if let Some(d) = digits(mask, 3) {
        let p: u16 = d.parse().expect("at most 3 digits");
        if p > max {
            return Err(err(format!("prefix {p} out of range 0-{max}")));
        }
        p as u8
    } else if let (true, Ok(m)) = (ip.is_ipv4(), mask.parse::<Ipv4Addr>()) {
        let m = u32::from(m);
        // Contiguous: the ones all come first, i.e. the inverted mask is 0…01…1.
        if (!m).wrapping_add(1) & !m != 0 {
            return Err(err(format!("mask {mask} is not contiguous")));
        }
        m.count_ones() as u8
    } else {
        return Err(err(format!(
            "{mask} is not a prefix length 0-{max}{}",
            if ip.is_ipv4() {
                " or a dotted mask"
            } else {
                ""
            }
        )));
    };
    Ok(Net::new(ip, prefix))
}

/// A net written as one text, `addr/prefix` or `addr/dotted-mask` (JSON, form, or a URL
/// segment whose slash was percent-encoded).
pub(crate) fn net_text(clause: &str, text: &str) -> Result<Net, Error> {
    match text.split_once('/') {
        Some((addr, mask)) => net(clause, addr, mask),
        None => Err(Error::new(
            clause,
            text,
            format!("{clause} {text}: expected address/prefix, e.g. 10.0.0.0/8"),
        )),
    }
}

/// A TCP/UDP port, 1..=65535.
pub(crate) fn port(clause: &str, text: &str) -> Result<u16, Error> {
    let Some(d) = digits(text, 20) else {
        return Err(Error::new(
            clause,
            text,
            format!("{clause} {text} is not a number"),
        ));
    };
    match d.parse::<u64>() {
        Ok(p @ 1..=65535) => Ok(p as u16),
        _ => Err(Error::new(
            clause,
            text,
            format!("{clause} {text} out of range 1-65535"),
        )),
    }
}

/// An IP protocol number, 0..=255.
pub(crate) fn proto(clause: &str, text: &str) -> Result<u8, Error> {
    let Some(d) = digits(text, 20) else {
        return Err(Error::new(
            clause,
            text,
            format!("{clause} {text} is not a number"),
        ));
    };
    d.parse::<u8>()
        .map_err(|_| Error::new(clause, text, format!("{clause} {text} out of range 0-255")))
}

/// The protocol number of a protocol name: `tcp`, `udp` or `icmp`, any case.
pub(crate) fn proto_name(name: &str) -> Option<u8> {
    match name.to_ascii_lowercase().as_str() {
        "tcp" => Some(6),
        "udp" => Some(17),
        "icmp" => Some(1),
        _ => None,
    }
}

/// A sensor name: 1..=64 of `[A-Za-z0-9_.-]`, and not only dots (names may become paths).
pub(crate) fn sensor(clause: &str, text: &str) -> Result<String, Error> {
    let ok_char = |b: u8| b.is_ascii_alphanumeric() || b"_.-".contains(&b);
    if text.is_empty()
        || text.len() > MAX_SENSOR_LEN
        || !text.bytes().all(ok_char)
        || text.bytes().all(|b| b == b'.')
    {
        return Err(Error::new(
            clause,
            text,
            format!(
                "{clause} {text:?}: a sensor name is 1-{MAX_SENSOR_LEN} of A-Z a-z 0-9 _ . - \
                 (not only dots)"
            ),
        ));
    }
    Ok(text.to_owned())
}

/// A capacity in bytes: a plain integer, or a number (decimals allowed) with a unit
/// `B KB MB GB TB PB` (any case, powers of 1024, optional space), rounded down — or several
/// of them summed, as Docket-py's `parse_capacity` did (`0.5MB 1KB`); at least 1.
pub(crate) fn capacity(clause: &str, text: &str) -> Result<u64, Error> {
    let err = |why: &str| Error::new(clause, text, format!("{clause} {text}: {why}"));
    let not_a_size = || err("not a size (bytes, or numbers with B KB MB GB TB PB, summed)");
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(not_a_size());
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, after) = rest.split_at(split);
        let after = after.trim_start();
        let unit_len = after
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        rest = after.trim_start();
        let mult: i128 = match unit.to_ascii_uppercase().as_str() {
            "" | "B" => 1,
            "KB" => 1 << 10,
            "MB" => 1 << 20,
            "GB" => 1 << 30,
            "TB" => 1 << 40,
            "PB" => 1 << 50,
            _ => return Err(not_a_size()),
        };
        let (int, frac) = match num.split_once('.') {
            Some((i, f)) => (i, f),
            None => (num, ""),
        };
        if digits(int, usize::MAX).is_none()
            || (num.contains('.') && digits(frac, usize::MAX).is_none())
        {
            return Err(not_a_size());
        }
        let part = scaled(int, frac, mult).ok_or_else(|| err("too large"))?;
        total = total.checked_add(part).ok_or_else(|| err("too large"))?;
    }
    match u64::try_from(total) {
        Ok(0) => Err(err("must be at least 1 byte")),
        Ok(n) => Ok(n),
        Err(_) => Err(err("too large")),
    }
}

/// A positive count (packets).
pub(crate) fn count(clause: &str, text: &str) -> Result<u64, Error> {
    match digits(text, 20).map(str::parse::<u64>) {
        Some(Ok(n)) if n > 0 => Ok(n),
        Some(Ok(_)) => Err(Error::new(
            clause,
            text,
            format!("{clause} {text}: must be at least 1"),
        )),
        Some(Err(_)) => Err(Error::new(
            clause,
            text,
            format!("{clause} {text}: too large"),
        )),
        None => Err(Error::new(
            clause,
            text,
            format!("{clause} {text} is not a positive integer"),
        )),
    }
}

/// A raw tcpdump expression: not blank, at most [`MAX_BPF_LEN`] bytes, no NUL, and compiled by
/// libpcap (for Ethernet) on its own. Compiling here is what makes a typo a 400 rather than a
/// job that silently matches nothing, and what refuses text such as `tcp) or (udp`, which
/// would otherwise escape the parentheses it is wrapped in and void the other clauses.
pub(crate) fn bpf(clause: &str, text: &str) -> Result<String, Error> {
    let why = if text.trim().is_empty() {
        "must not be empty".to_owned()
    } else if text.len() > MAX_BPF_LEN {
        format!("longer than {MAX_BPF_LEN} bytes")
    } else if text.contains('\0') {
        "must not contain NUL".to_owned()
    } else if let Some(name) = crate::pcap::host_name(text) {
        // libpcap would resolve it through DNS while the request is handled.
        format!("host names are not resolved ({name:?}): use a numeric address")
    } else {
        match crate::pcap::BpfFilter::compile(text, 1) {
            Ok(_) => return Ok(text.to_owned()),
            Err(crate::pcap::Error::BadFilter { reason, .. }) => {
                format!("does not compile: {reason}")
            }
            Err(e) => format!("does not compile: {e}"),
        }
    };
    // Do not echo a huge expression back in the error.
    let shown: String = text.chars().take(64).collect();
    Err(Error::new(clause, &shown, format!("{clause}: {why}")))
}

/// An output format: `pcap` ([`OutputKind::Pcap`]: classic pcap or nothing) or `pcapng`, any
/// case. Without the clause the output is [`OutputKind::Auto`].
pub(crate) fn format(clause: &str, text: &str) -> Result<OutputKind, Error> {
    match text.to_ascii_lowercase().as_str() {
        "pcap" => Ok(OutputKind::Pcap),
        "pcapng" => Ok(OutputKind::Pcapng),
        _ => Err(Error::new(
            clause,
            text,
            format!("{clause} {text}: expected pcap or pcapng"),
        )),
    }
}

/// `ip` with all but the first `prefix` bits cleared.
pub(crate) fn network(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & m))
        }
        IpAddr::V6(a) => {
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & m))
        }
    }
}
