//! How the MongoDB driver's errors become the port's [`StoreError`], classified for core's retry
//! schedule — from the error's **kind, codes and labels only**, never its message text (seed fix
//! #9: the original matched substrings such as "timeout" or "EOF").
//!
//! **Transient** (worth retrying; every store write is idempotent, so an ambiguous failure is
//! safe to repeat):
//! * an error carrying one of the labels [`TRANSIENT_LABELS`] (`RetryableWriteError`,
//!   `TransientTransactionError`, `RetryableError`), on the error or any error it wraps;
//! * the kinds `Io` (connection refused/reset, socket timeouts), `ConnectionPoolCleared`,
//!   `ServerSelection` (no reachable server within the selection timeout) and `DnsResolve`
//!   (resolving a `mongodb+srv` name; DNS outages pass);
//! * a command error, write concern error or write error whose code is in [`TRANSIENT_CODES`]:
//!   network, shutdown and not-primary codes (6 HostUnreachable, 7 HostNotFound, 50
//!   MaxTimeMSExpired, 64 WriteConcernFailed, 89 NetworkTimeout, 91 ShutdownInProgress, 133
//!   FailedToSatisfyReadPreference, 189 PrimarySteppedDown, 262 ExceededTimeLimit, 9001
//!   SocketException, 10058 LegacyNotPrimary, 10107 NotWritablePrimary, 11600
//!   InterruptedAtShutdown, 11602 InterruptedDueToReplStateChange, 13435
//!   NotPrimaryNoSecondaryOk, 13436 NotPrimaryOrSecondary).
//!
//! **Permanent** — everything else: duplicate keys (11000), validation and bad-value errors,
//! authentication, invalid URIs or TLS configuration, undecodable documents, an incompatible
//! server, a client that was shut down.
//!
//! The text of a [`StoreError`] is built from the kind, code, code name and labels; the server's
//! `errmsg` is left out because a duplicate-key message quotes the key (a share token, a user
//! id). Driver messages of network-level kinds (I/O, server selection) name hosts, never
//! credentials, and are kept: they are what an operator needs.

use std::collections::BTreeSet;

use mongodb::error::{Error, ErrorKind, WriteFailure};

use crate::engine::store::StoreError;

/// Labels that mark an error as worth retrying.
pub const TRANSIENT_LABELS: [&str; 3] =
    ["RetryableWriteError", "TransientTransactionError", "RetryableError"];

/// Server error codes that mean "try again": network, shutdown, not-primary, time limits.
pub const TRANSIENT_CODES: [i32; 16] = [
    6,     // HostUnreachable
    7,     // HostNotFound
    50,    // MaxTimeMSExpired
    64,    // WriteConcernFailed (timeout waiting for replication; the write may apply later)
    89,    // NetworkTimeout
    91,    // ShutdownInProgress
    133,   // FailedToSatisfyReadPreference
    189,   // PrimarySteppedDown
    262,   // ExceededTimeLimit
    9001,  // SocketException
    10058, // LegacyNotPrimary
    10107, // NotWritablePrimary
    11600, // InterruptedAtShutdown
    11602, // InterruptedDueToReplStateChange
    13435, // NotPrimaryNoSecondaryOk
    13436, // NotPrimaryOrSecondary
];

/// Duplicate key on a unique index.
pub(super) const DUPLICATE_KEY: i32 = 11000;

/// Transient or permanent, from kind, codes and labels (see the module documentation).
pub fn classify(err: &Error) -> StoreError {
    let text = describe(err);
    if is_transient(err) {
        StoreError::Transient(text)
    } else {
        StoreError::Permanent(text)
    }
}

/// Whether `err` (or an error it wraps) is transient.
fn is_transient(err: &Error) -> bool {
    if TRANSIENT_LABELS.iter().any(|label| err.contains_label(label)) {
        return true;
    }
    chain(err).any(|e| {
        matches!(
            e.kind.as_ref(),
            ErrorKind::Io(_)
                | ErrorKind::ConnectionPoolCleared { .. }
                | ErrorKind::ServerSelection { .. }
                | ErrorKind::DnsResolve { .. }
        ) || codes(e).iter().any(|code| TRANSIENT_CODES.contains(code))
    })
}

/// Whether `err` is a duplicate key error (code 11000) from a write or command.
pub(super) fn is_duplicate_key(err: &Error) -> bool {
    chain(err).any(|e| codes(e).contains(&DUPLICATE_KEY))
}

/// `err` and the errors it wraps, outermost first.
fn chain<'a>(err: &'a Error) -> impl Iterator<Item = &'a Error> {
    std::iter::successors(Some(err), |e: &&'a Error| {
        let e: &'a Error = e;
        std::error::Error::source(e)?.downcast_ref::<Error>()
    })
}

/// The server codes carried directly by one error (not its sources).
fn codes(err: &Error) -> Vec<i32> {
    match err.kind.as_ref() {
        ErrorKind::Command(e) => vec![e.code],
        ErrorKind::Write(WriteFailure::WriteError(e)) => vec![e.code],
        ErrorKind::Write(WriteFailure::WriteConcernError(e)) => vec![e.code],
        ErrorKind::InsertMany(e) => e
            .write_errors
            .iter()
            .flatten()
            .map(|w| w.code)
            .chain(e.write_concern_error.iter().map(|w| w.code))
            .collect(),
        _ => Vec::new(),
    }
}

/// A message for logs: kind, codes and labels; network-level driver text; never `errmsg`.
fn describe(err: &Error) -> String {
    let labels: BTreeSet<&str> = err.labels().iter().map(String::as_str).collect();
    let labels = if labels.is_empty() { String::new() } else { format!(" labels={labels:?}") };
    let what = match err.kind.as_ref() {
        ErrorKind::Io(io) => format!("I/O error ({:?}): {io}", io.kind()),
        ErrorKind::ConnectionPoolCleared { message, .. } => {
            format!("connection pool cleared: {message}")
        }
        ErrorKind::ServerSelection { message, .. } => format!("server selection failed: {message}"),
        ErrorKind::DnsResolve { message, .. } => format!("DNS resolution failed: {message}"),
        ErrorKind::InvalidArgument { message, .. } => format!("invalid argument: {message}"),
        ErrorKind::Authentication { .. } => "authentication failed".to_owned(),
        ErrorKind::Command(e) => format!("command failed: code {} {}", e.code, e.code_name),
        ErrorKind::Write(WriteFailure::WriteError(e)) => {
            format!("write failed: code {} {}", e.code, e.code_name.as_deref().unwrap_or_default())
        }
        ErrorKind::Write(WriteFailure::WriteConcernError(e)) => {
            format!("write concern failed: code {} {}", e.code, e.code_name)
        }
        ErrorKind::InsertMany(_) => format!("insert failed: codes {:?}", codes(err)),
        ErrorKind::InvalidTlsConfig { message, .. } => {
            format!("invalid TLS configuration: {message}")
        }
        ErrorKind::IncompatibleServer { message, .. } => format!("incompatible server: {message}"),
        ErrorKind::BsonDeserialization(_) | ErrorKind::BsonSerialization(_) => {
            "BSON encoding error".to_owned()
        }
        ErrorKind::InvalidResponse { .. } => "invalid server response".to_owned(),
        ErrorKind::Shutdown => "client shut down".to_owned(),
        _ => "driver error".to_owned(),
    };
    format!("mongo store: {}{labels}", what.trim_end())
}

#[cfg(test)]
mod tests {
    use mongodb::bson::{doc, from_document};
    use mongodb::error::{CommandError, WriteError};

    use super::*;

    fn command_error(code: i32) -> Error {
        let e: CommandError =
            from_document(doc! { "code": code, "codeName": "X", "errmsg": "secret key value" })
                .unwrap();
        Error::from(ErrorKind::Command(e))
    }

    fn write_error(code: i32) -> Error {
        let e: WriteError =
            from_document(doc! { "code": code, "errmsg": "dup key: { shareToken: \"tok\" }" })
                .unwrap();
        Error::from(ErrorKind::Write(WriteFailure::WriteError(e)))
    }

    #[test]
    fn io_errors_are_transient() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(matches!(classify(&Error::from(refused)), StoreError::Transient(_)));
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(matches!(classify(&Error::from(reset)), StoreError::Transient(_)));
    }

    #[test]
    fn codes_decide_for_command_and_write_errors() {
        for code in TRANSIENT_CODES {
            assert!(matches!(classify(&command_error(code)), StoreError::Transient(_)), "{code}");
            assert!(matches!(classify(&write_error(code)), StoreError::Transient(_)), "{code}");
        }
        for code in [2, 11000, 121, 13, 18] {
            assert!(matches!(classify(&command_error(code)), StoreError::Permanent(_)), "{code}");
        }
        assert!(is_duplicate_key(&write_error(11000)));
        assert!(!is_duplicate_key(&write_error(91)));
    }

    #[test]
    fn other_kinds_are_permanent() {
        // (Most kinds cannot be built outside the driver; server selection is exercised
        // against a closed port in tests/mongo_store.rs.)
        let undecodable = from_document::<CommandError>(doc! {}).unwrap_err();
        for kind in [ErrorKind::Shutdown, ErrorKind::BsonDeserialization(undecodable)] {
            assert!(matches!(classify(&Error::from(kind)), StoreError::Permanent(_)));
        }
    }

    #[test]
    fn message_text_is_neither_used_nor_repeated() {
        // A permanent code whose message contains every word the original matched on.
        let e: CommandError = from_document(doc! {
            "code": 2, "codeName": "BadValue",
            "errmsg": "connection refused timeout EOF socket no reachable servers",
        })
        .unwrap();
        let err = Error::from(ErrorKind::Command(e));
        assert!(matches!(classify(&err), StoreError::Permanent(_)));
        let text = classify(&write_error(11000)).to_string();
        assert!(!text.contains("tok"), "{text}");
        assert!(text.contains("11000"), "{text}");
    }
}
