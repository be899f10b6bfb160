//! Escalation: an attendance notification not acknowledged in time is escalated once, as a
//! notification of kind escalation in the same inbox (live streams, and webhooks flagged
//! for escalation). The due time is fixed when the attendance is stored: `escalation_after`
//! in office hours, `escalation_after_out_of_hours` outside them. The worker escalates due
//! notifications (`worker.rs`); the store's atomic claim makes it once across replicas.

use std::time::Duration;

use cpis_proto::notification::{EscalationNotice, Notification, NotificationKind, notification};
use prost::Message;
use uuid::Uuid;

use crate::config::OfficeHours;
use crate::convert::{self, timestamp};
use crate::store::{NewNotification, StoredNotification};

/// When attendance notifications are escalated.
#[derive(Debug, Clone, Copy)]
pub struct EscalationPolicy {
    /// After this long, in office hours.
    pub after: Duration,
    /// After this long, outside office hours.
    pub after_out_of_hours: Duration,
    /// The office hours.
    pub office_hours: OfficeHours,
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl EscalationPolicy {
    /// When an attendance notification stored at `created_us` is escalated unless
    /// acknowledged first.
    pub fn due_at(&self, created_us: i64) -> i64 {
        let wait = if self.office_hours.is_open(created_us) {
            self.after
        } else {
            self.after_out_of_hours
        };
        created_us.saturating_add(micros(wait))
    }
}

/// The escalation of an attendance notification at `now_us`; None when the stored
/// notification is not an attendance (or does not decode).
pub(crate) fn escalation_of(original: &StoredNotification, now_us: i64) -> Option<NewNotification> {
    let escalated = convert::notification(original).ok()?;
    let Some(notification::Payload::Attendance(attendance)) = escalated.payload else {
        return None;
    };
    let waited = now_us.saturating_sub(original.create_time_us).max(0);
    let notification_id = Uuid::now_v7();
    let body = Notification {
        notification_id: notification_id.to_string(),
        authority: escalated.authority,
        kind: NotificationKind::Escalation as i32,
        payload: Some(notification::Payload::Escalation(EscalationNotice {
            escalated_notification_id: original.notification_id.to_string(),
            attendance: Some(attendance),
            unacknowledged_for: Some(prost_types::Duration {
                seconds: waited / 1_000_000,
                nanos: i32::try_from((waited % 1_000_000) * 1_000).unwrap_or_default(),
            }),
        })),
        event_id: String::new(),
        occur_time: Some(timestamp(now_us)),
        create_time: None,
        occurrence_count: 1,
        last_occur_time: Some(timestamp(now_us)),
        acknowledgement: None,
        cursor: String::new(),
    };
    Some(NewNotification {
        notification_id,
        event_id: None,
        authority: original.authority.clone(),
        kind: NotificationKind::Escalation as i32,
        body: body.encode_to_vec(),
        occur_time_us: now_us,
        fold_key: None,
        escalate_at_us: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_hours_attendances_escalate_sooner() {
        let policy = EscalationPolicy {
            after: Duration::from_secs(900),
            after_out_of_hours: Duration::from_secs(300),
            office_hours: OfficeHours::parse("Mon-Fri 08:00-18:00", "+00:00").unwrap(),
        };
        // Wednesday 2025-10-08 12:00 UTC, then 20:00, then Saturday noon.
        let noon = 1_759_924_800_000_000;
        assert_eq!(policy.due_at(noon), noon + 900_000_000);
        let evening = noon + 8 * 3_600_000_000;
        assert_eq!(policy.due_at(evening), evening + 300_000_000);
        let saturday = noon + 3 * 86_400_000_000;
        assert_eq!(policy.due_at(saturday), saturday + 300_000_000);
    }

    #[test]
    fn office_hours_follow_the_offset_and_wrap_the_week() {
        let hours = OfficeHours::parse("Mon-Fri 08:00-18:00", "+01:00").unwrap();
        // Wednesday 07:30 UTC is 08:30 at +01:00.
        assert!(hours.is_open(1_759_908_600_000_000));
        let weekend = OfficeHours::parse("Sat-Mon 00:00-24:00", "+00:00").unwrap();
        assert!(!weekend.is_open(1_759_924_800_000_000));
        assert!(OfficeHours::parse("Mon-Fri 18:00-08:00", "+00:00").is_err());
        assert!(OfficeHours::parse("weekdays", "+00:00").is_err());
        assert!(OfficeHours::parse("Mon-Fri 08:00-18:00", "BST").is_err());
    }
}
