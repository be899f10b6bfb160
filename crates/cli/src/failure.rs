//! Why a command failed, as a message that says what to do and an exit code scripts can
//! branch on.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done |
//! | 1 | failed (an internal error, or a check that found a problem) |
//! | 2 | usage: a flag, a file or an argument is wrong (also clap's own code) |
//! | 3 | not found |
//! | 4 | not signed in, or the session expired: run `cpis login` |
//! | 5 | refused: the user or client system may not do this |
//! | 6 | unavailable: a service or the network did not answer; try again, or follow local procedure |
//! | 7 | conflict: the data changed meanwhile, or the request was already applied |

use std::path::Path;
use std::process::ExitCode;

use tonic::{Code, Status};

/// A failed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// The exit code (see the module's table).
    pub(crate) code: u8,
    /// What went wrong and what to do.
    pub(crate) message: String,
}

impl Failure {
    /// A problem found by a check (exit code 1).
    pub(crate) fn failed(message: impl Into<String>) -> Self {
        Self::new(1, message)
    }

    /// An internal error (exit code 1).
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(1, message)
    }

    /// A wrong flag, file or argument (exit code 2).
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self::new(2, message)
    }

    /// Not signed in (exit code 4).
    pub(crate) fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(4, message)
    }

    /// The mesh did not answer (exit code 6).
    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        Self::new(6, message)
    }

    /// A file that cannot be read or written (exit code 2).
    pub(crate) fn io(path: &Path, error: std::io::Error) -> Self {
        Self::usage(format!("{}: {error}", path.display()))
    }

    fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// A gRPC error from `what` (e.g. "the check"), with the service's message, its field
    /// violations, and advice for the codes a user can act on.
    pub(crate) fn from_status(what: &str, status: &Status) -> Self {
        let mut message = format!("{what}: {}", status.message());
        for violation in cpis_mesh::error::field_violations(status) {
            message.push_str(&format!(
                "\n  {}: {}",
                violation.field, violation.description
            ));
        }
        let (code, advice) = match status.code() {
            Code::InvalidArgument | Code::OutOfRange => (2, None),
            Code::NotFound => (3, None),
            Code::Unauthenticated => (4, Some("sign in again with `cpis login`")),
            Code::PermissionDenied => (
                5,
                Some("the signed-in role or this client system may not do this"),
            ),
            Code::Unavailable | Code::DeadlineExceeded => (
                6,
                Some("the mesh did not answer; is it running (`cpis dev`)? try again"),
            ),
            Code::Aborted | Code::AlreadyExists | Code::FailedPrecondition => (7, None),
            _ => (1, None),
        };
        if let Some(advice) = advice {
            message.push_str(&format!("\n  ({advice})"));
        }
        Self { code, message }
    }

    /// The process exit code.
    pub(crate) fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code)
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Self::failed(message)
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Self {
        Self::failed(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_exit_codes_with_advice() {
        let f = Failure::from_status("the check", &Status::unauthenticated("token expired"));
        assert_eq!(f.code, 4);
        assert!(f.message.contains("token expired") && f.message.contains("cpis login"));
        assert_eq!(
            Failure::from_status("x", &Status::permission_denied("no")).code,
            5
        );
        assert_eq!(
            Failure::from_status("x", &Status::unavailable("down")).code,
            6
        );
        assert_eq!(
            Failure::from_status("x", &Status::not_found("none")).code,
            3
        );
        assert_eq!(Failure::from_status("x", &Status::aborted("stale")).code, 7);
        assert_eq!(Failure::from_status("x", &Status::internal("bug")).code, 1);
    }

    #[test]
    fn field_violations_are_listed() {
        let status: Status =
            cpis_mesh::error::ApiError::invalid("nhs_number", "fails the Modulus 11 check").into();
        let f = Failure::from_status("the check", &status);
        assert_eq!(f.code, 2);
        assert!(
            f.message.contains("nhs_number: fails the Modulus 11 check"),
            "{}",
            f.message
        );
    }
}
