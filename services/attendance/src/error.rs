//! The service's errors, mapped to gRPC statuses in one place.

use cpis_mesh::ApiError;

use crate::store::StoreError;

/// What a clinician's system shows when the flags cannot be read.
pub const FLAGS_UNAVAILABLE: &str =
    "child protection information unavailable \u{2014} follow local procedure";

/// Why the flag registry did not answer a check.
#[derive(Debug, thiserror::Error)]
pub enum FlagsError {
    /// It did not answer within the deadline.
    #[error("the flag registry did not answer within {0:?}")]
    Timeout(std::time::Duration),
    /// It answered with an error.
    #[error("the flag registry answered {0}")]
    Status(#[from] tonic::Status),
}

impl From<FlagsError> for ApiError {
    fn from(error: FlagsError) -> Self {
        // Whatever went wrong, the clinician gets the same instruction; the cause is logged.
        tracing::warn!(error = %error, "flags unavailable for a check");
        ApiError::Unavailable(FLAGS_UNAVAILABLE.to_owned())
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Database(
                sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed,
            )
            | StoreError::Outbox(cpis_mesh::outbox::OutboxError::Database(
                sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed,
            )) => ApiError::Unavailable("the attendance database is unavailable".to_owned()),
            StoreError::RequestReplayed => ApiError::Aborted(
                "a check with this request_id was recorded meanwhile; retry to get its answer"
                    .to_owned(),
            ),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_precise() {
        let code = |e: ApiError| tonic::Status::from(e).code();
        assert_eq!(
            code(StoreError::Database(sqlx::Error::PoolTimedOut).into()),
            tonic::Code::Unavailable
        );
        assert_eq!(
            code(StoreError::Database(sqlx::Error::RowNotFound).into()),
            tonic::Code::Internal
        );
        assert_eq!(
            code(StoreError::RequestReplayed.into()),
            tonic::Code::Aborted
        );
        let flags = tonic::Status::from(ApiError::from(FlagsError::Status(
            tonic::Status::internal("boom"),
        )));
        assert_eq!(flags.code(), tonic::Code::Unavailable);
        assert_eq!(flags.message(), FLAGS_UNAVAILABLE);
    }
}
