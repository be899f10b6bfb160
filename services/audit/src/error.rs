//! The service's errors, mapped to gRPC statuses in one place.

use cpis_mesh::ApiError;
use tonic::Status;

use crate::store::StoreError;

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Corrupt { .. } => {
                // Loud: someone changed the log behind the service's back.
                tracing::error!(%error, "audit log integrity failure");
                ApiError::DataLoss(error.to_string())
            }
            StoreError::Database(
                sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed,
            ) => ApiError::Unavailable("the audit log's database is unavailable".to_owned()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// Maps a store error straight to a status.
pub(crate) fn status(error: StoreError) -> Status {
    ApiError::from(error).into()
}
