//! The `[notification]` configuration section (`CPIS_NOTIFICATION_<KEY>`).

use cpis_mesh::config::{ConfigError, ServiceSection, from_str_or_native};
use cpis_mesh::duration::HumanDuration;
use serde::{Deserialize, Serialize};

/// The notification service's own settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationSection {
    /// `postgres://...` in a cluster; an SQLite file on one machine.
    pub database_url: String,
    /// Connection pool size.
    #[serde(deserialize_with = "from_str_or_native")]
    pub database_max_connections: u32,
    /// The identity service, whose signing keys verify users' tokens.
    pub identity_url: String,
    /// The audit service (`https://audit:50055`), where the outbox relay ships the audit
    /// events of inbox reads and acknowledgements; empty runs no relay (the events wait in
    /// the outbox for one).
    pub audit_address: String,
    /// Redis for the live fan-out across replicas (`redis://...`); without it, live
    /// notifications reach only the subscribers of the replica that stored them (one
    /// process).
    pub redis_url: Option<String>,
    /// Prefix of the Redis pub/sub channel, so that several meshes can share one Redis.
    pub redis_channel_prefix: String,
    /// A keep-alive on an idle Subscribe stream at least this often (at most 30 s, as
    /// the contract promises).
    pub keep_alive: HumanDuration,
    /// Largest batch accepted by Publish.
    #[serde(deserialize_with = "from_str_or_native")]
    pub max_batch: u32,
    /// The key that seals webhook secrets in the database (base64 of 32 random bytes,
    /// ChaCha20-Poly1305); without it secrets are stored unsealed (one machine only).
    pub webhook_secret_key: Option<String>,
    /// A PEM bundle of CA certificates webhook receivers may chain to, in addition to the
    /// web PKI roots (e.g. an authority's private CA).
    pub webhook_ca_file: Option<String>,
    /// How long one delivery attempt may take (connect, TLS, request, answer).
    pub delivery_timeout: HumanDuration,
    /// The first retry's floor and the unit of the exponential backoff.
    pub delivery_backoff_base: HumanDuration,
    /// The longest wait between two attempts.
    pub delivery_backoff_cap: HumanDuration,
    /// How long after its creation a failing delivery is retried before it is
    /// dead-lettered.
    pub delivery_max_age: HumanDuration,
    /// How often the background worker looks for due deliveries and escalations (it is
    /// also woken at once by every publish).
    pub worker_poll_interval: HumanDuration,
    /// An unacknowledged attendance notification created in office hours is escalated
    /// after this long.
    pub escalation_after: HumanDuration,
    /// The same, for one created outside office hours.
    pub escalation_after_out_of_hours: HumanDuration,
    /// Office hours: `<day>-<day> HH:MM-HH:MM` (days Mon..Sun), e.g. `Mon-Fri 08:00-18:00`.
    pub office_hours: String,
    /// The UTC offset office hours are written in, e.g. `+00:00` (fixed: no daylight
    /// saving rule is applied).
    pub office_hours_utc_offset: String,
    /// Repeated attendances of the same child at the same setting within this window of
    /// the first are folded into one notification; `0s` turns folding off.
    pub fold_window: HumanDuration,
}

impl Default for NotificationSection {
    fn default() -> Self {
        Self {
            database_url: "sqlite:.cpis/data/notification.db".to_owned(),
            database_max_connections: 10,
            identity_url: "https://localhost:50051".to_owned(),
            audit_address: "https://localhost:50055".to_owned(),
            redis_url: None,
            redis_channel_prefix: "cpis:".to_owned(),
            keep_alive: HumanDuration::from_secs(15),
            max_batch: 500,
            webhook_secret_key: None,
            webhook_ca_file: None,
            delivery_timeout: HumanDuration::from_secs(10),
            delivery_backoff_base: HumanDuration::from_secs(1),
            delivery_backoff_cap: HumanDuration::from_secs(3600),
            delivery_max_age: HumanDuration::from_secs(72 * 3600),
            worker_poll_interval: HumanDuration::from_secs(1),
            escalation_after: HumanDuration::from_secs(15 * 60),
            escalation_after_out_of_hours: HumanDuration::from_secs(5 * 60),
            office_hours: "Mon-Fri 08:00-18:00".to_owned(),
            office_hours_utc_offset: "+00:00".to_owned(),
            fold_window: HumanDuration::from_secs(30 * 60),
        }
    }
}

impl NotificationSection {
    /// The Redis channel live notifications travel on.
    pub fn redis_channel(&self) -> String {
        format!("{}notification:live", self.redis_channel_prefix)
    }
}

impl NotificationSection {
    /// The office hours, checked.
    pub fn office_hours(&self) -> Result<OfficeHours, ConfigError> {
        OfficeHours::parse(&self.office_hours, &self.office_hours_utc_offset)
            .map_err(|e| ConfigError::invalid("notification.office_hours", e))
    }
}

/// When the authority's office is staffed: some days of the week, between two times, at a
/// fixed UTC offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OfficeHours {
    /// The first and last day, Monday = 0.
    days: (u8, u8),
    /// Minutes after midnight: opening (inclusive) and closing (exclusive).
    minutes: (u16, u16),
    offset: time::UtcOffset,
}

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

fn clock(text: &str) -> Option<u16> {
    let (h, m) = text.split_once(':')?;
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
}

fn utc_offset(text: &str) -> Option<time::UtcOffset> {
    let sign: i8 = match text.get(..1)? {
        "+" => 1,
        "-" => -1,
        _ => return None,
    };
    let (h, m) = text.get(1..)?.split_once(':')?;
    let (h, m): (i8, i8) = (h.parse().ok()?, m.parse().ok()?);
    time::UtcOffset::from_hms(sign * h, sign * m, 0).ok()
}

impl OfficeHours {
    /// Parses `Mon-Fri 08:00-18:00` and an offset such as `+01:00`.
    pub fn parse(hours: &str, offset: &str) -> Result<Self, String> {
        let bad = || format!("`{hours}` is not like `Mon-Fri 08:00-18:00`");
        let (days, times) = hours.trim().split_once(' ').ok_or_else(bad)?;
        let (first, last) = days.split_once('-').unwrap_or((days, days));
        let day = |d: &str| DAYS.iter().position(|x| x.eq_ignore_ascii_case(d.trim()));
        let (first, last) = (day(first).ok_or_else(bad)?, day(last).ok_or_else(bad)?);
        let (open, close) = times.trim().split_once('-').ok_or_else(bad)?;
        let (open, close) = (clock(open).ok_or_else(bad)?, clock(close).ok_or_else(bad)?);
        if open >= close {
            return Err(format!("`{hours}`: the office must open before it closes"));
        }
        let offset = utc_offset(offset.trim())
            .ok_or_else(|| format!("`{offset}` is not a UTC offset like +01:00"))?;
        Ok(Self {
            days: (
                u8::try_from(first).unwrap_or(0),
                u8::try_from(last).unwrap_or(6),
            ),
            minutes: (open, close),
            offset,
        })
    }

    /// Whether the office is open at `unix_us` (microseconds since the epoch).
    pub fn is_open(&self, unix_us: i64) -> bool {
        let Ok(at) = time::OffsetDateTime::from_unix_timestamp(unix_us.div_euclid(1_000_000))
        else {
            return false;
        };
        let local = at.to_offset(self.offset);
        let day = local.weekday().number_days_from_monday();
        let (first, last) = self.days;
        // A range may wrap the week (Sat-Mon).
        let open_day = if first <= last {
            (first..=last).contains(&day)
        } else {
            day >= first || day <= last
        };
        let minute = u16::from(local.hour()) * 60 + u16::from(local.minute());
        open_day && minute >= self.minutes.0 && minute < self.minutes.1
    }
}

impl ServiceSection for NotificationSection {
    const NAME: &'static str = "notification";

    fn validate(&self) -> Result<(), ConfigError> {
        let keep_alive = self.keep_alive.get();
        if keep_alive.is_zero() || keep_alive > std::time::Duration::from_secs(30) {
            return Err(ConfigError::invalid(
                "notification.keep_alive",
                "must be more than 0 and at most 30s",
            ));
        }
        if self.max_batch == 0 {
            return Err(ConfigError::invalid(
                "notification.max_batch",
                "must be at least 1",
            ));
        }
        for (key, value) in [
            ("notification.delivery_timeout", self.delivery_timeout),
            (
                "notification.delivery_backoff_base",
                self.delivery_backoff_base,
            ),
            (
                "notification.delivery_backoff_cap",
                self.delivery_backoff_cap,
            ),
            (
                "notification.worker_poll_interval",
                self.worker_poll_interval,
            ),
            ("notification.escalation_after", self.escalation_after),
            (
                "notification.escalation_after_out_of_hours",
                self.escalation_after_out_of_hours,
            ),
        ] {
            if value.get().is_zero() {
                return Err(ConfigError::invalid(key, "must be more than 0"));
            }
        }
        if self.delivery_backoff_cap < self.delivery_backoff_base {
            return Err(ConfigError::invalid(
                "notification.delivery_backoff_cap",
                "must be at least notification.delivery_backoff_base",
            ));
        }
        self.office_hours()?;
        if let Some(key) = &self.webhook_secret_key {
            crate::webhook::SecretSealer::from_base64(key).map_err(|e| {
                ConfigError::invalid("notification.webhook_secret_key", e.to_string())
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_bad_values_are_named() {
        NotificationSection::default().validate().unwrap();
        let mut section = NotificationSection {
            office_hours: "weekdays".into(),
            ..NotificationSection::default()
        };
        assert!(
            section
                .validate()
                .unwrap_err()
                .to_string()
                .contains("office_hours")
        );
        section.office_hours = "Mon-Fri 08:00-18:00".into();
        section.webhook_secret_key = Some("too-short".into());
        assert!(
            section
                .validate()
                .unwrap_err()
                .to_string()
                .contains("webhook_secret_key")
        );
        section.webhook_secret_key = None;
        section.delivery_backoff_cap = HumanDuration::from_millis(10);
        assert!(
            section
                .validate()
                .unwrap_err()
                .to_string()
                .contains("delivery_backoff_cap")
        );
    }
}
