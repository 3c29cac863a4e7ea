//! The agent's error type: what went wrong, and of which kind.
//!
//! Every verb of the engine returns [`Error`]. Its [`ErrorKind`] is what front
//! ends map to their own codes, once each: the HTTP API to a status and
//! `{"error": message, "kind": kind}` ([`crate::api`]), the CLI to an exit
//! code ([`ErrorKind::exit_code`]); the Docker plugin's `{"Err": ...}` and
//! CNI's numeric codes derive from the same kind.

use serde::{Deserialize, Serialize};

use crate::{ipam::IpamError, ports::PortError};

/// The class of a failure, as the caller can act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request is malformed or contradicts itself: retrying it the same
    /// way fails again.
    InvalidArgument,
    /// A named network or container does not exist.
    NotFound,
    /// The request clashes with existing state (a name, address or port
    /// that is taken, an object in use).
    Conflict,
    /// A resource is exhausted or the agent cannot be reached: retrying
    /// later may succeed.
    Unavailable,
    /// The agent failed (kernel, store, datapath).
    Internal,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 5] = [
        ErrorKind::InvalidArgument,
        ErrorKind::NotFound,
        ErrorKind::Conflict,
        ErrorKind::Unavailable,
        ErrorKind::Internal,
    ];

    /// The name used in the API's JSON (`"kind"`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
        }
    }

    /// HTTP status of the API's answer.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::InvalidArgument => 400,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::Unavailable => 503,
            ErrorKind::Internal => 500,
        }
    }

    /// The kind an HTTP status stands for (answers of an agent that predates
    /// `"kind"`, or of a proxy in between).
    pub fn from_http_status(status: u16) -> ErrorKind {
        match status {
            400 | 422 => ErrorKind::InvalidArgument,
            404 => ErrorKind::NotFound,
            409 => ErrorKind::Conflict,
            503 => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        }
    }

    /// Exit code of the CLI (README, "Exit codes"). 2 is clap's code for a
    /// command line it cannot parse.
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorKind::Internal => 1,
            ErrorKind::InvalidArgument => 3,
            ErrorKind::NotFound => 4,
            ErrorKind::Conflict => 5,
            ErrorKind::Unavailable => 6,
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error of the engine or of a call to the agent: a one-line message and
/// its kind.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Ipam(#[from] IpamError),
    #[error(transparent)]
    Port(#[from] PortError),
    /// Kernel, store or datapath failures; the message is the whole chain.
    #[error("{0:#}")]
    Internal(#[source] anyhow::Error),
    /// Failed elsewhere (in the agent, seen by a client): the kind as
    /// reported.
    #[error("{message}")]
    Remote { kind: ErrorKind, message: String },
}

impl From<anyhow::Error> for Error {
    fn from(e: anyhow::Error) -> Self {
        Error::Internal(e)
    }
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidArgument(_) => ErrorKind::InvalidArgument,
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::Conflict(_) => ErrorKind::Conflict,
            Error::Unavailable(_) => ErrorKind::Unavailable,
            Error::Ipam(e) => e.kind(),
            Error::Port(e) => e.kind(),
            Error::Internal(_) => ErrorKind::Internal,
            Error::Remote { kind, .. } => *kind,
        }
    }

    pub fn invalid(m: impl Into<String>) -> Error {
        Error::InvalidArgument(m.into())
    }

    pub fn not_found(m: impl Into<String>) -> Error {
        Error::NotFound(m.into())
    }

    pub fn conflict(m: impl Into<String>) -> Error {
        Error::Conflict(m.into())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_and_statuses_are_distinct_per_kind() {
        let mut codes: Vec<i32> = ErrorKind::ALL.iter().map(|k| k.exit_code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), ErrorKind::ALL.len());
        assert!(!codes.contains(&0) && !codes.contains(&2), "{codes:?}");
        for k in ErrorKind::ALL {
            assert_eq!(ErrorKind::from_http_status(k.http_status()), k);
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.as_str()));
        }
    }

    #[test]
    fn wrapped_errors_keep_their_kind() {
        let e: Error = IpamError::IpInUse(std::net::Ipv4Addr::LOCALHOST).into();
        assert_eq!(e.kind(), ErrorKind::Conflict);
        let e: Error = crate::ports::parse_spec("0").unwrap_err().into();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        let e: Error = anyhow::anyhow!("inner").context("outer").into();
        assert_eq!(e.kind(), ErrorKind::Internal);
        assert_eq!(e.to_string(), "outer: inner");
    }
}
