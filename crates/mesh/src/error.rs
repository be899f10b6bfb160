//! One mapping from errors to `tonic::Status`.
//!
//! Services keep their own error types (thiserror) and convert them to [`ApiError`] in one
//! place; this module turns an [`ApiError`] into the status a caller sees, with
//! `google.rpc.BadRequest` field violations for invalid input. Internal details are logged,
//! never sent.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// One invalid field of a request: the domain's type, so domain validation flows straight
/// into `google.rpc.BadRequest`.
pub use cpis_domain::FieldViolation;

/// What went wrong in an RPC, in the terms of its answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed; each bad field is named.
    #[error("invalid request: {}", describe(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// No valid session token.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// The thing asked for does not exist (only where saying so reveals nothing).
    #[error("{0}")]
    NotFound(String),
    /// The thing to create exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// A concurrent change won (e.g. a stale version).
    #[error("{0}")]
    Aborted(String),
    /// The system is not in a state that allows this.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A limit was reached (rate limit, quota).
    #[error("{0}")]
    ResourceExhausted(String),
    /// A dependency is down; the caller may retry later.
    #[error("{0}")]
    Unavailable(String),
    /// The deadline passed.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// Stored data is damaged or was changed behind the service's back.
    #[error("{0}")]
    DataLoss(String),
    /// A bug or an unexpected failure; details are logged, not sent.
    #[error("internal error: {0}")]
    Internal(String),
}

fn describe(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}

impl ApiError {
    /// One invalid field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation::new(field, description)])
    }

    /// The gRPC code of this error.
    pub fn code(&self) -> Code {
        match self {
            Self::InvalidArgument(_) => Code::InvalidArgument,
            Self::Unauthenticated(_) => Code::Unauthenticated,
            Self::PermissionDenied(_) => Code::PermissionDenied,
            Self::NotFound(_) => Code::NotFound,
            Self::AlreadyExists(_) => Code::AlreadyExists,
            Self::Aborted(_) => Code::Aborted,
            Self::FailedPrecondition(_) => Code::FailedPrecondition,
            Self::ResourceExhausted(_) => Code::ResourceExhausted,
            Self::Unavailable(_) => Code::Unavailable,
            Self::DeadlineExceeded(_) => Code::DeadlineExceeded,
            Self::DataLoss(_) => Code::DataLoss,
            Self::Internal(_) => Code::Internal,
        }
    }
}

impl From<cpis_domain::FieldViolations> for ApiError {
    fn from(violations: cpis_domain::FieldViolations) -> Self {
        Self::InvalidArgument(violations.into_vec())
    }
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::InvalidArgument(violations) => {
                let message = format!("invalid request: {}", describe(&violations));
                let mut details = ErrorDetails::new();
                for v in violations {
                    details.add_bad_request_violation(v.field, v.description);
                }
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                Status::internal("internal error")
            }
            other => Status::new(other.code(), other.to_string()),
        }
    }
}

/// The field violations of a status, if it carries `google.rpc.BadRequest` details.
pub fn field_violations(status: &Status) -> Vec<FieldViolation> {
    status
        .get_details_bad_request()
        .map(|bad| {
            bad.field_violations
                .into_iter()
                .map(|v| FieldViolation::new(v.field, v.description))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_carries_each_field() {
        let status: Status = ApiError::InvalidArgument(vec![
            FieldViolation::new("nhs_number.value", "check digit is wrong"),
            FieldViolation::new("arrived_at", "is in the future"),
        ])
        .into();
        assert_eq!(status.code(), Code::InvalidArgument);
        let violations = field_violations(&status);
        assert_eq!(violations.len(), 2);
        assert_eq!(violations[0].field, "nhs_number.value");
    }

    #[test]
    fn internal_details_are_not_sent() {
        let status: Status = ApiError::Internal("password=hunter2 in query".into()).into();
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("hunter2"));
    }
}
