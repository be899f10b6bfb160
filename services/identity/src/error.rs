//! Identity's errors, mapped to the status a caller sees in one place.

use cpis_domain::{FieldViolation, FieldViolations};
use cpis_mesh::ApiError;
use cpis_mesh::token::TokenError;

use crate::credential::HashError;
use crate::keys::KeyError;
use crate::limiter::LimiterError;
use crate::store::StoreError;

/// The one answer to a failed sign-in, whether the username exists or not.
pub const SIGN_IN_FAILED: &str = "the username or the credential is wrong";

/// What went wrong in an identity RPC.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Bad input, every bad field named.
    #[error("invalid request")]
    Invalid(Vec<FieldViolation>),
    /// Unknown username or wrong credential (the same answer for both).
    #[error("{SIGN_IN_FAILED}")]
    SignInFailed,
    /// Too many failed sign-ins for the username or the calling system.
    #[error("too many failed sign-ins; try again later")]
    LockedOut,
    /// No valid session token.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The caller may not do this.
    #[error("{0}")]
    Denied(String),
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The thing to create exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The signing keys failed.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// The sign-in limits cannot be checked.
    #[error(transparent)]
    Limiter(#[from] LimiterError),
    /// A credential could not be hashed.
    #[error(transparent)]
    Hash(#[from] HashError),
    /// A bug or an unexpected failure; logged, not sent.
    #[error("{0}")]
    Internal(String),
}

impl IdentityError {
    /// One invalid field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldViolation::new(field, description)])
    }
}

impl From<FieldViolations> for IdentityError {
    fn from(violations: FieldViolations) -> Self {
        Self::Invalid(violations.into_vec())
    }
}

impl From<IdentityError> for ApiError {
    fn from(error: IdentityError) -> Self {
        match error {
            IdentityError::Invalid(violations) => ApiError::InvalidArgument(violations),
            IdentityError::SignInFailed => ApiError::Unauthenticated(SIGN_IN_FAILED.to_owned()),
            IdentityError::LockedOut => ApiError::ResourceExhausted(error.to_string()),
            IdentityError::Token(token) => token.into(),
            IdentityError::Denied(message) => ApiError::PermissionDenied(message),
            IdentityError::NotFound(message) => ApiError::NotFound(message),
            IdentityError::AlreadyExists(message) => ApiError::AlreadyExists(message),
            IdentityError::Store(StoreError::Unavailable(message)) => {
                ApiError::Unavailable(format!("the identity database is unavailable: {message}"))
            }
            IdentityError::Store(StoreError::Conflict(message)) => {
                ApiError::AlreadyExists(format!("exists already: {message}"))
            }
            IdentityError::Limiter(limiter) => ApiError::Unavailable(limiter.to_string()),
            other @ (IdentityError::Store(_)
            | IdentityError::Keys(_)
            | IdentityError::Hash(_)
            | IdentityError::Internal(_)) => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<IdentityError> for tonic::Status {
    fn from(error: IdentityError) -> Self {
        ApiError::from(error).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_precise_and_internals_stay_inside() {
        let code = |e: IdentityError| tonic::Status::from(e).code();
        assert_eq!(
            code(IdentityError::SignInFailed),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            code(IdentityError::LockedOut),
            tonic::Code::ResourceExhausted
        );
        assert_eq!(
            code(IdentityError::Token(TokenError::Expired)),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            code(IdentityError::Store(StoreError::Unavailable("down".into()))),
            tonic::Code::Unavailable
        );
        let status = tonic::Status::from(IdentityError::Store(StoreError::Corrupt(
            "secret detail".into(),
        )));
        assert_eq!(status.code(), tonic::Code::Internal);
        assert!(!status.message().contains("secret"));
    }
}
