//! Time values of a query: parsing the accepted forms (RFC 3339, zone-less ISO times and dates
//! as UTC, `@` epoch seconds, durations — a bare number is seconds, as in Docket-py),
//! quantising relative times to the time window, and rendering back to RFC 3339 and epoch
//! seconds.
//!
//! Invariants: all arithmetic is on `i128` nanoseconds with checked operations or bounded
//! inputs, so no input text can overflow; every absolute time this module hands out lies in
//! [`MIN_NANOS`, `MAX_NANOS`] (years 1970..=9999), the range RFC 3339 can print.

use ::time::format_description::well_known::Rfc3339;
use ::time::OffsetDateTime;

use super::Error;
use crate::pcap::{Timestamp, NANOS_PER_SEC};

/// 1970-01-01T00:00:00Z.
pub(crate) const MIN_NANOS: i128 = 0;
/// 9999-12-31T23:59:59.999999999Z, the last instant with a four-digit year.
pub(crate) const MAX_NANOS: i128 = 253_402_300_800 * NANOS_PER_SEC - 1;

/// A time as the client wrote it, before it is resolved against "now" and quantised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TimeSpec {
    /// An absolute instant (RFC 3339 or epoch seconds), already in range.
    At(Timestamp),
    /// A duration before "now", in nanoseconds (never negative).
    Ago(i128),
}

impl TimeSpec {
    /// The instant this spec names at `now`; `clause` and `text` only label the error.
    pub(crate) fn resolve(self, now: Timestamp, clause: &str, text: &str) -> Result<i128, Error> {
        match self {
            TimeSpec::At(t) => Ok(t.0),
            TimeSpec::Ago(d) => {
                let t = now.0.checked_sub(d).unwrap_or(i128::MIN);
                check_range(t, clause, text)
            }
        }
    }
}

/// Nanoseconds in one of the duration units `us ms s m h d w` (lower-case).
fn unit_nanos(unit: &str) -> Option<i128> {
    Some(match unit {
        "us" => 1_000,
        "ms" => 1_000_000,
        "s" => NANOS_PER_SEC,
        "m" => 60 * NANOS_PER_SEC,
        "h" => 3_600 * NANOS_PER_SEC,
        "d" => 86_400 * NANOS_PER_SEC,
        "w" => 604_800 * NANOS_PER_SEC,
        _ => return None,
    })
}

/// A decimal number split at its point: `(integer digits, fraction digits)`, both ASCII
/// digits, the integer part non-empty, the fraction non-empty if a point was written.
fn split_decimal(s: &str) -> Option<(&str, &str)> {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) if !f.is_empty() => (i, f),
        Some(_) => return None,
        None => (s, ""),
    };
    let digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
    (!int.is_empty() && digits(int) && digits(frac)).then_some((int, frac))
}

/// `int.frac × unit`, rounded down, or `None` if it does not fit comfortably in an `i128`.
///
/// Bounds keep every step exact and overflow-free: at most 20 integer digits (< 1e20) times a
/// unit below 1e15 stays below 1e35; only the first 18 fraction digits count (< 1e18 times a
/// unit below 1e15 is below 1e33); the caller's `checked_add` catches long sums.
pub(crate) fn scaled(int: &str, frac: &str, unit: i128) -> Option<i128> {
    let int = int.trim_start_matches('0');
    if int.len() > 20 {
        return None;
    }
    let whole: i128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let frac = &frac[..frac.len().min(18)];
    let part = if frac.is_empty() {
        0
    } else {
        let f: i128 = frac.parse().ok()?;
        f * unit / 10i128.pow(frac.len() as u32)
    };
    whole.checked_mul(unit)?.checked_add(part)
}

/// A duration: one or more `<number><unit>` with units `us ms s m h d w` in any case and
/// decimals allowed (`5m`, `1h30m`, `1.5h`, `1.2h3.4m5.6s`). With `bare_seconds`, a plain
/// number is also accepted as seconds (Docket-py's `*-ago` fields); returns nanoseconds.
pub(crate) fn parse_duration(text: &str, bare_seconds: bool) -> Option<i128> {
    if bare_seconds {
        if let Some((int, frac)) = split_decimal(text) {
            return scaled(int, frac, NANOS_PER_SEC);
        }
    }
    let lower = text.to_ascii_lowercase();
    let mut rest = lower.as_str();
    if rest.is_empty() {
        return None;
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, after) = rest.split_at(num_len);
        let unit_len = after
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let (int, frac) = split_decimal(num)?;
        let part = scaled(int, frac, unit_nanos(unit)?)?;
        total = total.checked_add(part)?;
        rest = after;
    }
    Some(total)
}

/// Epoch seconds (`1700000000`, `1700000000.5`) to nanoseconds, rounded down; `None` if the
/// text is not a plain decimal number.
fn parse_epoch(text: &str) -> Option<i128> {
    let (int, frac) = split_decimal(text)?;
    // Too many digits for any year we accept: report it as out of range, not as garbage.
    Some(scaled(int, frac, NANOS_PER_SEC).unwrap_or(i128::MAX))
}

/// `t` if it lies in years 1970..=9999, else an error naming `clause`.
pub(crate) fn check_range(t: i128, clause: &str, text: &str) -> Result<i128, Error> {
    if (MIN_NANOS..=MAX_NANOS).contains(&t) {
        Ok(t)
    } else {
        Err(Error::new(
            clause,
            text,
            format!("{clause} {text}: time outside the years 1970..=9999"),
        ))
    }
}

/// An ISO 8601 time without a zone (`2024-01-02T03:04:05`, seconds and a fraction optional,
/// `T` or a space between date and time) or a date alone (`2024-01-02`, its midnight), read as UTC — as
/// Docket-py read them; nanoseconds since the epoch.
fn parse_zoneless(text: &str) -> Option<i128> {
    use ::time::macros::format_description;
    let t = format_description!(
        version = 2,
        "[year]-[month]-[day][first [T] [t] [ ]][hour]:[minute][optional [:[second][optional [.[subsecond]]]]]"
    );
    if let Ok(dt) = ::time::PrimitiveDateTime::parse(text, t) {
        return Some(dt.assume_utc().unix_timestamp_nanos());
    }
    let d = format_description!(version = 2, "[year]-[month]-[day]");
    ::time::Date::parse(text, d)
        .ok()
        .map(|d| d.midnight().assume_utc().unix_timestamp_nanos())
}

/// The value of `after`/`before`: RFC 3339 with any offset (converted to UTC), an ISO time
/// without a zone or a date alone (UTC), `@` and epoch seconds, or a duration meaning "that
/// long before now" — a bare number is a duration in seconds, as in Docket-py (`after/3600`:
/// the last hour).
pub(crate) fn parse_time(clause: &str, text: &str) -> Result<TimeSpec, Error> {
    if let Some(epoch) = text.strip_prefix('@') {
        if let Some(t) = parse_epoch(epoch) {
            return check_range(t, clause, text).map(|t| TimeSpec::At(Timestamp(t)));
        }
    }
    if let Ok(dt) = OffsetDateTime::parse(text, &Rfc3339) {
        // `unix_timestamp_nanos` is the instant in UTC whatever offset was written.
        return check_range(dt.unix_timestamp_nanos(), clause, text)
            .map(|t| TimeSpec::At(Timestamp(t)));
    }
    if let Some(t) = parse_zoneless(text) {
        return check_range(t, clause, text).map(|t| TimeSpec::At(Timestamp(t)));
    }
    if let Some(d) = parse_duration(text, true) {
        // A bare number that big is an epoch time written without its `@` (a duration of
        // over 31 years would reach back before most captures exist): said, not guessed.
        if split_decimal(text).is_some() && d >= 1_000_000_000 * NANOS_PER_SEC {
            return Err(Error::new(
                clause,
                text,
                format!(
                    "{clause} {text}: a bare number is a duration in seconds (as in Docket-py); \
                     write epoch seconds as @{text}"
                ),
            ));
        }
        return Ok(TimeSpec::Ago(d));
    }
    Err(Error::new(
        clause,
        text,
        format!(
            "{clause} {text}: not a time (RFC 3339 like 2024-01-02T03:04:05Z, a date like \
             2024-01-02, epoch seconds like @1700000000, or a duration before now like 90, \
             5m or 1h30m)"
        ),
    ))
}

/// The value of `after-ago`/`before-ago`: a duration (a bare number counts as seconds, as in
/// Docket-py).
pub(crate) fn parse_ago(clause: &str, text: &str) -> Result<TimeSpec, Error> {
    parse_duration(text, true)
        .map(TimeSpec::Ago)
        .ok_or_else(|| {
            Error::new(
                clause,
                text,
                format!("{clause} {text}: not a duration (like 90s, 5m, 1h30m, 1.5h, 2d, 1w)"),
            )
        })
}

/// `t` rounded down to a multiple of `w` (> 0).
pub(crate) fn floor_to(t: i128, w: i128) -> i128 {
    t.div_euclid(w) * w
}

/// `t` rounded up to a multiple of `w` (> 0); a multiple stays.
pub(crate) fn ceil_to(t: i128, w: i128) -> i128 {
    let f = floor_to(t, w);
    if f == t {
        t
    } else {
        f + w
    }
}

/// RFC 3339 in UTC with `Z`: whole seconds, plus a fraction (trailing zeros trimmed) only when
/// there is one. Times outside [`MIN_NANOS`, `MAX_NANOS`] are clamped into it.
pub fn rfc3339(t: i128) -> String {
    let t = t.clamp(MIN_NANOS, MAX_NANOS);
    let dt =
        OffsetDateTime::from_unix_timestamp_nanos(t).expect("years 1970..=9999 are representable");
    let mut s = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    );
    push_fraction(&mut s, dt.nanosecond());
    s.push('Z');
    s
}

/// Epoch seconds as the URL grammar reads them back: `@1700000000` or `@1700000000.5`.
pub(crate) fn epoch_text(t: i128) -> String {
    let mut s = format!("@{}", t.div_euclid(NANOS_PER_SEC));
    push_fraction(&mut s, t.rem_euclid(NANOS_PER_SEC) as u32);
    s
}

/// Appends `.ddd` for a non-zero nanosecond fraction, without trailing zeros.
fn push_fraction(s: &mut String, nanos: u32) {
    if nanos != 0 {
        let f = format!("{nanos:09}");
        s.push('.');
        s.push_str(f.trim_end_matches('0'));
    }
}
