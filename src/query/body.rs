//! The request-body front ends: a JSON object and an `application/x-www-form-urlencoded` form,
//! with Docket-py's field names.
//!
//! Both reduce each field to one or more texts and hand them to [`field`], the single place
//! that maps a field name to a clause, so that JSON, form and URL accept the same values.

use serde_json::Value;

use super::builder::Builder;
use super::time::{parse_ago, parse_time};
use super::{values, Error, Query, QueryConfig};
use crate::pcap::Timestamp;

/// A JSON object's members in order, repeated keys kept.
struct Members(Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for Members {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Members, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Members;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Members, A::Error> {
                let mut v = Vec::new();
                while let Some(entry) = m.next_entry::<String, Value>()? {
                    v.push(entry);
                }
                Ok(Members(v))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// How a JSON field may be typed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// A string, or a list of strings.
    Strings,
    /// A number or a string, or a list of them.
    Numbers,
    /// One number or string.
    NumberOrString,
    /// One string.
    String,
    /// A boolean (read and ignored).
    Bool,
}

/// The fields, with their JSON shape. Names are case-sensitive, as in Docket-py.
fn shape(key: &str) -> Option<Shape> {
    Some(match key {
        "host" | "net" | "sensor" => Shape::Strings,
        "port" => Shape::Numbers,
        "proto"
        | "after"
        | "before"
        | "after-ago"
        | "before-ago"
        | "Steno-Limit-Packets"
        | "Steno-Limit-Bytes"
        | "limit-bytes"
        | "limit-packets" => Shape::NumberOrString,
        "proto-name" | "bpf" | "format" => Shape::String,
        "ignore-weight" => Shape::Bool,
        _ => return None,
    })
}

fn unknown(key: &str) -> Error {
    Error::new(key, key, format!("unrecognized field: {key}"))
}

/// Applies one text value of field `key` to the builder.
fn field(b: &mut Builder, key: &str, v: &str) -> Result<(), Error> {
    match key {
        "host" => b.host(values::host(key, v)?),
        "net" => b.net(values::net_text(key, v)?),
        "port" => b.port(values::port(key, v)?),
        "proto" => b.proto(values::proto(key, v)?, &format!("proto {v}"))?,
        "proto-name" => {
            let p = values::proto_name(v).ok_or_else(|| {
                Error::new(key, v, format!("proto-name {v}: expected tcp, udp or icmp"))
            })?;
            b.proto(p, v)?;
        }
        "after" => b.after(parse_time(key, v)?, key, v)?,
        "before" => b.before(parse_time(key, v)?, key, v)?,
        "after-ago" => b.after(parse_ago(key, v)?, key, v)?,
        "before-ago" => b.before(parse_ago(key, v)?, key, v)?,
        "sensor" => b.sensor(values::sensor(key, v)?),
        "limit-bytes" | "Steno-Limit-Bytes" => b.limit_bytes(values::capacity(key, v)?, key, v)?,
        "limit-packets" | "Steno-Limit-Packets" => {
            b.limit_packets(values::count(key, v)?, key, v)?
        }
        "bpf" => b.bpf(values::bpf(key, v)?, key)?,
        "format" => b.output(values::format(key, v)?, key, v)?,
        "ignore-weight" => b.ignore_weight(),
        _ => return Err(unknown(key)),
    }
    Ok(())
}

/// The texts of a JSON field value of the given shape; `null` (also inside a list) is absent.
fn texts(key: &str, value: &Value, shape: Shape) -> Result<Vec<String>, Error> {
    let wrong = || {
        let expected = match shape {
            Shape::Strings => "a string or a list of strings",
            Shape::Numbers => "a number or string, or a list of them",
            Shape::NumberOrString => "a number or a string",
            Shape::String => "a string",
            Shape::Bool => "true or false",
        };
        Error::new(key, &value.to_string(), format!("{key} must be {expected}"))
    };
    let scalar = |v: &Value| -> Result<Option<String>, Error> {
        match (v, shape) {
            (Value::Null, _) => Ok(None),
            (Value::String(s), Shape::Strings | Shape::Numbers | Shape::NumberOrString)
            | (Value::String(s), Shape::String) => Ok(Some(s.clone())),
            // serde_json prints integers exactly and floats shortest-round-trip, so the text
            // parsers see what the client wrote (and reject 80.5 as a port).
            (Value::Number(n), Shape::Numbers | Shape::NumberOrString) => Ok(Some(n.to_string())),
            _ => Err(wrong()),
        }
    };
    match (value, shape) {
        (Value::Null, _) => Ok(vec![]),
        (Value::Bool(true), Shape::Bool) => Ok(vec!["true".to_owned()]),
        (Value::Bool(false), Shape::Bool) => Ok(vec![]),
        (Value::Array(items), Shape::Strings | Shape::Numbers) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                out.extend(scalar(item)?);
            }
            Ok(out)
        }
        (v, _) => Ok(scalar(v)?.into_iter().collect()),
    }
}

/// Parses a JSON object body into a [`Query`]: keys `host`, `net`, `sensor` (string or list),
/// `port` (number or string, or a list), `proto` (number or numeric string), `proto-name`
/// (`tcp|udp|icmp`), `after`, `before` (any time form), `after-ago`, `before-ago`
/// (durations; a bare number is seconds), `limit-bytes`/`Steno-Limit-Bytes`,
/// `limit-packets`/`Steno-Limit-Packets`, `bpf`, `format`, `ignore-weight` (true: start even when the estimate is over the limit).
/// `null` means absent. Unknown keys are errors naming the key; a body that is not a JSON
/// object is an error with clause `body`.
pub fn parse_json(body: &[u8], now: Timestamp, cfg: &QueryConfig) -> Result<Query, Error> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        let shown: String = String::from_utf8_lossy(body).chars().take(64).collect();
        Error::new("body", &shown, format!("body is not valid JSON: {e}"))
    })?;
    if !value.is_object() {
        let shown: String = value.to_string().chars().take(64).collect();
        return Err(Error::new(
            "body",
            &shown,
            "body must be a JSON object".to_owned(),
        ));
    }
    // Read again keeping every member: a map keeps only the last of a repeated key, and a
    // repeated key means two different queries to whoever reads the body next.
    let Ok(Members(members)) = serde_json::from_slice::<Members>(body) else {
        return Err(Error::new(
            "body",
            "",
            "body must be a JSON object".to_owned(),
        ));
    };
    let mut seen = std::collections::HashSet::new();
    for (key, _) in &members {
        if !seen.insert(key.as_str()) {
            return Err(Error::new(
                key,
                "",
                format!("{key}: given twice; use a list for several values"),
            ));
        }
    }
    let mut b = Builder::default();
    for (key, value) in &members {
        let shape = shape(key).ok_or_else(|| unknown(key))?;
        for text in texts(key, value, shape)? {
            field(&mut b, key, &text)?;
        }
    }
    b.finish(now, cfg)
}

/// The text of a raw query sent as JSON, `{"query": "host 1.2.3.4 and port 53"}` (Docket-py's
/// `POST query/`): exactly that one key, once, a string.
///
/// # Errors
/// Not a JSON object, a key other than `query`, `query` twice, or not a string.
pub fn text_of_json(body: &[u8]) -> Result<String, Error> {
    let Ok(Members(members)) = serde_json::from_slice::<Members>(body) else {
        let shown: String = String::from_utf8_lossy(body).chars().take(64).collect();
        return Err(Error::new(
            "body",
            &shown,
            "body must be a JSON object like {\"query\": \"host 1.2.3.4\"}".to_owned(),
        ));
    };
    let mut text = None;
    for (key, value) in members {
        match (key.as_str(), value) {
            ("query", _) if text.is_some() => {
                return Err(Error::new("query", "", "query: given twice".to_owned()))
            }
            ("query", Value::String(s)) => text = Some(s),
            ("query", v) => {
                return Err(Error::new(
                    "query",
                    &v.to_string(),
                    "query must be a string".to_owned(),
                ))
            }
            (k, _) => return Err(unknown(k)),
        }
    }
    text.ok_or_else(|| Error::new("query", "", "query: missing".to_owned()))
}

/// Parses an `application/x-www-form-urlencoded` body into a [`Query`]: the same fields as
/// [`parse_json`], a repeated key gives a list (`host=a&host=b`), and empty values are ignored
/// (a browser form sends its empty fields). `ignore-weight` is on for any value but `false`,
/// `0`, `off` and `no`.
pub fn parse_form(body: &[u8], now: Timestamp, cfg: &QueryConfig) -> Result<Query, Error> {
    let mut b = Builder::default();
    for (key, value) in form_urlencoded::parse(body) {
        if shape(&key).is_none() {
            return Err(unknown(&key));
        }
        if key == "ignore-weight" {
            // A checkbox sends "on"; an empty field is ignored, as every empty field, and the
            // spellings of "no" say no.
            if !value.is_empty()
                && !["false", "0", "off", "no"].contains(&&*value.to_ascii_lowercase())
            {
                b.ignore_weight();
            }
        } else if !value.is_empty() {
            field(&mut b, &key, &value)?;
        }
    }
    b.finish(now, cfg)
}
