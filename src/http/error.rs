//! Every way a request can fail, and the one place a failure becomes a status code and the
//! JSON body `{"error": "...", "clause": "...", "value": "..."}`.
//!
//! Client faults are 4xx naming the clause; capacity is 503/507; our own faults are 500 with
//! the details only in the log (a client never sees paths or causes of ours).

use std::time::Duration;

use http::{header, HeaderValue, Response, StatusCode};

use super::{full, Body};
use crate::jobs::{self, Gone};
use crate::query;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The query does not parse.
    #[error(transparent)]
    Query(#[from] query::Error),
    /// The registry refused the job.
    #[error(transparent)]
    Job(#[from] jobs::Error),
    /// The job has no capture to read.
    #[error("{0}")]
    Gone(Gone, String),
    /// No such job.
    #[error("no such job")]
    NoSuchJob(String),
    /// A job id that is not 32 hex digits.
    #[error("a job id is 32 hexadecimal digits")]
    BadJobId(String),
    /// No route for the path and method.
    #[error("unrecognised request: try q/…, status, stats, ids, urls or jobs")]
    NoRoute,
    /// The path is a route, but not for this method; the methods it takes.
    #[error("this route takes {0}")]
    MethodNotAllowed(&'static str),
    /// A parameter of a listing is wrong.
    #[error("{message}")]
    BadParameter {
        /// The parameter.
        name: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        message: String,
    },
    /// The body is over the limit.
    #[error("request body over {0} bytes")]
    BodyTooLarge(usize),
    /// The body could not be read (the client went away).
    #[error("the request body could not be read")]
    BodyUnreadable,
    /// The body did not arrive within the time a client has to send its request.
    #[error("the request body did not arrive within {} s", .0.as_secs())]
    BodyTimeout(Duration),
    /// The job is another user's.
    #[error("job {id} belongs to {owner}: only its owner or an admin may {action} it")]
    NotOwner {
        /// The job.
        id: String,
        /// Who started it.
        owner: String,
        /// What was refused.
        action: &'static str,
    },
    /// A body type other than JSON or a form.
    #[error("send application/json or application/x-www-form-urlencoded")]
    UnsupportedMedia(String),
    /// No valid credentials.
    #[error("authentication required")]
    Unauthorized {
        /// The realm to name in `WWW-Authenticate`, when passwords are accepted.
        realm: Option<String>,
    },
    /// Too many failed logins from this address.
    #[error("too many failed logins from this address")]
    LockedOut(Duration),
    /// A state-changing request from another site.
    #[error("cross-site requests are refused")]
    CrossSite,
    /// The server is stopping.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The spool's file system does not answer (frozen, a hung mount).
    #[error("the spool's file system is not answering (frozen or hung); try again later")]
    SpoolStalled,
    /// Our fault; the cause goes to the log only.
    #[error("internal error (see the server log)")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    /// Its status code.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Query(_)
            | ApiError::BadParameter { .. }
            | ApiError::Job(jobs::Error::UnknownSensor(_)) => StatusCode::BAD_REQUEST,
            ApiError::Job(jobs::Error::InsufficientStorage { .. }) => {
                StatusCode::INSUFFICIENT_STORAGE
            }
            ApiError::Job(jobs::Error::Busy(_))
            | ApiError::ShuttingDown
            | ApiError::SpoolStalled
            | ApiError::Gone(Gone::Stalled, _) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Gone(..) => StatusCode::GONE,
            // A path whose id is not an id names nothing: not found, as an unknown id.
            ApiError::NoSuchJob(_) | ApiError::BadJobId(_) | ApiError::NoRoute => {
                StatusCode::NOT_FOUND
            }
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BodyTooLarge(_) | ApiError::Job(jobs::Error::TooHeavy(_)) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::BodyUnreadable => StatusCode::BAD_REQUEST,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::NotOwner { .. } => StatusCode::FORBIDDEN,
            ApiError::UnsupportedMedia(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::LockedOut(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::CrossSite => StatusCode::FORBIDDEN,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The clause (or header, parameter) at fault and its value, when there is one.
    fn culprit(&self) -> Option<(&str, &str)> {
        match self {
            ApiError::Query(e) => Some((&e.clause, &e.value)),
            ApiError::Job(jobs::Error::UnknownSensor(s)) => Some(("sensor", s)),
            ApiError::Gone(_, id) | ApiError::NoSuchJob(id) | ApiError::BadJobId(id) => {
                Some(("id", id))
            }
            ApiError::BadParameter { name, value, .. } => Some((name, value)),
            ApiError::BodyTooLarge(_) | ApiError::BodyUnreadable | ApiError::BodyTimeout(_) => {
                Some(("body", ""))
            }
            ApiError::NotOwner { id, .. } => Some(("id", id)),
            ApiError::UnsupportedMedia(t) => Some(("content-type", t)),
            _ => None,
        }
    }

    /// The response: status, JSON body, and the headers the status calls for.
    pub fn into_response(self) -> Response<Body> {
        if let ApiError::Internal(e) = &self {
            tracing::error!(error = %e, "internal error");
        }
        let status = self.status();
        let message = match &self {
            ApiError::Query(e) => e.message.clone(),
            e => e.to_string(),
        };
        let mut v = serde_json::json!({ "error": message });
        if let Some((clause, value)) = self.culprit() {
            v["clause"] = clause.into();
            if !value.is_empty() {
                v["value"] = value.into();
            }
        }
        if let ApiError::Job(jobs::Error::TooHeavy(w)) = &self {
            v["estimate"] = serde_json::to_value(w).unwrap_or_default();
        }
        let mut r = super::json(status, &v);
        match &self {
            ApiError::Unauthorized { realm: Some(realm) } => {
                let v = format!("Basic realm=\"{realm}\", charset=\"UTF-8\"");
                if let Ok(v) = HeaderValue::from_str(&v) {
                    r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
                }
            }
            ApiError::MethodNotAllowed(allow) => {
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            ApiError::LockedOut(wait) => {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(wait.as_secs() + 1));
            }
            ApiError::SpoolStalled | ApiError::Gone(Gone::Stalled, _) => {
                let wait = crate::spool::FS_WAIT.as_secs();
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(wait));
            }
            // The rest of a stalled body may still come: the connection cannot be reused.
            ApiError::BodyTimeout(_) => {
                r.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        r
    }
}

/// `416 Range Not Satisfiable` for a file of `total` bytes (not an error body: RFC 9110 asks
/// only for `Content-Range`).
pub fn unsatisfiable(total: u64) -> Response<Body> {
    Response::builder()
        .status(StatusCode::RANGE_NOT_SATISFIABLE)
        .header(header::CONTENT_RANGE, format!("bytes */{total}"))
        .body(full(""))
        .expect("valid response")
}
