//! The core's error type; the C ABI maps each variant to a result code.

use crate::addr::AddrError;
use crate::nick::NickError;
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Error {
    #[error("invalid name: {0}")]
    Nick(#[from] NickError),
    #[error("invalid client address: {0}")]
    Addr(#[from] AddrError),
    #[error("unknown window {0:?}: use hour, day, week, month, year or all")]
    UnknownWindow(String),
    #[error("{0} has no claims")]
    NotFound(String),
    #[error("the store cannot commit: {0}")]
    Unavailable(String),
    #[error("cannot open the store at {path}: {message}")]
    Open { path: String, message: String },
    #[error("the store at {path} has schema version {found}; this build knows up to {known}")]
    Schema {
        path: String,
        found: i64,
        known: i64,
    },
    #[error("the store at {path} is open for writing by {holder}: one writer per store (open it read-only instead)")]
    Locked { path: String, holder: String },
    #[error("the stored aggregates disagree with the claims: {0}")]
    Inconsistent(String),
    #[error("too many {what} from this address or its /24: try again in {retry_after} s")]
    RateLimited {
        what: &'static str,
        retry_after: u32,
    },
    #[error("invalid argument: {0}")]
    Argument(String),
    #[error("the store was opened read-only: it cannot claim")]
    ReadOnly,
    #[error("the store was opened by process {0} and cannot be used after fork(): open a store in the child")]
    Forked(u32),
    #[error("{0} is not allowed on the library's callback thread")]
    WrongThread(&'static str),
    #[error("the store is closed")]
    Closed,
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Unavailable(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
