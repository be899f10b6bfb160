//! The service's errors, mapped to gRPC statuses in one place.

use cpis_mesh::ApiError;

use crate::store::StoreError;

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(id) => ApiError::NotFound(format!(
                "notification {id} is not in this authority's inbox; nothing was acknowledged"
            )),
            StoreError::WebhookNotFound(id) => {
                ApiError::NotFound(format!("webhook {id} is not registered by this authority"))
            }
            StoreError::Database(
                sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed,
            )
            | StoreError::Outbox(cpis_mesh::outbox::OutboxError::Database(
                sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed,
            )) => ApiError::Unavailable("the notification database is unavailable".to_owned()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_precise() {
        let code = |e: StoreError| tonic::Status::from(ApiError::from(e)).code();
        assert_eq!(
            code(StoreError::NotFound(uuid::Uuid::nil())),
            tonic::Code::NotFound
        );
        assert_eq!(
            code(StoreError::Database(sqlx::Error::PoolTimedOut)),
            tonic::Code::Unavailable
        );
        assert_eq!(
            code(StoreError::Database(sqlx::Error::RowNotFound)),
            tonic::Code::Internal
        );
    }
}
