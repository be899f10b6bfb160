//! The service's errors, mapped to gRPC statuses in one place.

use cpis_domain::FieldViolation;
use cpis_mesh::ApiError;

use crate::store::StoreError;

/// The domain's name of a flag field → its path in an RPC's request.
pub(crate) fn field_path(field: &str) -> String {
    match field {
        "nhs_number" => "record.nhs_number",
        "kind" => "record.kind",
        "legal_basis" => "record.looked_after_legal_basis",
        "expected_delivery" => "record.expected_delivery_date",
        "start_date" => "record.start_date",
        "end_date" => "record.end_date",
        "delete_date" => "record.delete_date",
        "case_reference" => "record.case_reference",
        "authority_code" => "authority.code",
        "authority_name" => "authority.name",
        "office_hours_phone" => "contacts.office_hours_phone",
        "emergency_duty_phone" => "contacts.emergency_duty_phone",
        "secure_email" => "contacts.secure_email",
        other => other,
    }
    .to_owned()
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict(reason) => ApiError::Aborted(reason),
            StoreError::SequenceUsed => ApiError::Aborted(error.to_string()),
            StoreError::NotFound => ApiError::NotFound("no such flag of this authority".to_owned()),
            StoreError::Invalid(violations) => ApiError::InvalidArgument(
                violations
                    .into_iter()
                    // EndFlag's own fields carry the same names as the domain's.
                    .map(|v| FieldViolation::new(v.field, v.description))
                    .collect(),
            ),
            StoreError::Corrupt { .. } => {
                tracing::error!(%error, "stored flag fails validation");
                ApiError::DataLoss("a stored flag is damaged".to_owned())
            }
            StoreError::Database(
                sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed,
            ) => ApiError::Unavailable("the flag registry's database is unavailable".to_owned()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}
