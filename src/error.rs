//! The crate's one error type: a kind (mapped 1:1 onto the C result codes) and a message.
//! Must not depend on anything but std.

use std::fmt;

/// What went wrong, coarse enough to branch on. Each kind maps to one C result code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A parameter was out of range, null, empty or of the wrong size.
    InvalidArgument,
    /// An SDP offer could not be parsed or accepted.
    InvalidSdp,
    /// A remote ICE candidate string could not be parsed.
    InvalidCandidate,
    /// The operation needs a connected peer (for example an open data channel).
    NotConnected,
    /// The peer or runtime is closed.
    Closed,
    /// A blocking call reached its timeout.
    Timeout,
    /// A non-blocking call could not proceed without blocking.
    WouldBlock,
    /// The caller's buffer is too small; the needed size was reported.
    BufferTooSmall,
    /// A payload exceeds a documented size limit.
    TooLarge,
    /// A socket or OS call failed.
    Io,
    /// A bug or an unexpected state inside the library (a caught panic ends up here).
    Internal,
}

/// An error with its kind and a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }

    /// The kind, for branching.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, for people.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }

    pub(crate) fn closed() -> Self {
        Self::new(ErrorKind::Closed, "the peer is closed")
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::new(ErrorKind::Io, e.to_string())
    }
}
