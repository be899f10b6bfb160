//! Between stored rows and the contract's messages.

use cpis_mesh::ApiError;
use cpis_proto::common::{OdsCode, Principal};
use cpis_proto::notification::{Acknowledgement, Notification};
use prost::Message;

use crate::cursor;
use crate::store::StoredNotification;

/// Microseconds since the epoch of a timestamp.
pub(crate) fn micros(t: &prost_types::Timestamp) -> i64 {
    t.seconds
        .saturating_mul(1_000_000)
        .saturating_add(i64::from(t.nanos / 1_000))
}

/// The timestamp of microseconds since the epoch.
pub(crate) fn timestamp(us: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: us.div_euclid(1_000_000),
        nanos: i32::try_from(us.rem_euclid(1_000_000) * 1_000).unwrap_or_default(),
    }
}

/// Now, in microseconds since the epoch.
pub(crate) fn now_us() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    i64::try_from(now.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

/// The contract's form of a verified user.
pub(crate) fn principal(p: &cpis_mesh::token::Principal) -> Principal {
    Principal {
        user_id: p.user_id.clone(),
        display_name: String::new(),
        role_profile_id: p.role_profile.clone(),
        role: p.role.clone(),
        organisation: Some(OdsCode {
            value: p.organisation.as_str().to_owned(),
        }),
    }
}

/// The notification a row holds, with its place, create time and acknowledgement.
pub(crate) fn notification(row: &StoredNotification) -> Result<Notification, ApiError> {
    let corrupt = || {
        ApiError::Internal(format!(
            "stored notification {} does not decode",
            row.notification_id
        ))
    };
    let mut n = Notification::decode(row.body.as_slice()).map_err(|_| corrupt())?;
    n.notification_id = row.notification_id.to_string();
    n.create_time = Some(timestamp(row.create_time_us));
    n.cursor = cursor::encode(row.seq);
    n.occurrence_count = row.occurrence_count.max(1);
    if let Some(last) = row.last_occur_time_us {
        n.last_occur_time = Some(timestamp(last));
    }
    n.acknowledgement = match &row.acknowledgement {
        Some((at, by)) => Some(Acknowledgement {
            acknowledge_time: Some(timestamp(*at)),
            acknowledged_by: Some(Principal::decode(by.as_slice()).map_err(|_| corrupt())?),
        }),
        None => None,
    };
    Ok(n)
}
