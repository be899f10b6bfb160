//! The `[attendance]` configuration section (`CPIS_ATTENDANCE_<KEY>`).

use cpis_domain::{RetentionPolicy, Window};
use cpis_mesh::config::{ConfigError, ServiceSection, from_str_or_native};
use cpis_mesh::duration::HumanDuration;
use serde::{Deserialize, Serialize};

/// The attendance service's own settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AttendanceSection {
    /// `postgres://...` in a cluster; an SQLite file on one machine.
    pub database_url: String,
    /// Connection pool size.
    #[serde(deserialize_with = "from_str_or_native")]
    pub database_max_connections: u32,
    /// The identity service, whose signing keys verify users' tokens.
    pub identity_url: String,
    /// The flag registry, asked `GetFlags` on every check.
    pub flags_url: String,
    /// How long a check waits for the flag registry before it answers UNAVAILABLE.
    pub flags_deadline: HumanDuration,
    /// The audit service, where the outbox relay ships audit events; empty runs no relay
    /// (the events wait in the outbox for one).
    pub audit_address: String,
    /// The notification service, where the outbox relay ships attendance notifications;
    /// empty ships none (they wait in the outbox).
    pub notification_address: String,
    /// How long after a flag's end date the child's attendances are still kept (the
    /// retention rule: see `docs/api/attendance.md`).
    pub retention_history: Window,
    /// How often the retention sweep deletes the attendances no flag retains any more.
    pub retention_sweep_interval: HumanDuration,
    /// How many attendances the sweep deletes per statement (one short transaction each).
    #[serde(deserialize_with = "from_str_or_native")]
    pub retention_sweep_batch: u32,
}

impl Default for AttendanceSection {
    fn default() -> Self {
        Self {
            database_url: "sqlite:.cpis/data/attendance.db".to_owned(),
            database_max_connections: 10,
            identity_url: "https://localhost:50051".to_owned(),
            flags_url: "https://localhost:50052".to_owned(),
            flags_deadline: HumanDuration::from_secs(2),
            audit_address: "https://localhost:50055".to_owned(),
            notification_address: "https://localhost:50054".to_owned(),
            retention_history: RetentionPolicy::default().history,
            retention_sweep_interval: HumanDuration::from_secs(3600),
            retention_sweep_batch: 1000,
        }
    }
}

impl AttendanceSection {
    /// The attendance retention rule configured.
    pub fn retention(&self) -> RetentionPolicy {
        RetentionPolicy {
            history: self.retention_history,
        }
    }
}

impl ServiceSection for AttendanceSection {
    const NAME: &'static str = "attendance";

    fn validate(&self) -> Result<(), ConfigError> {
        if self.flags_deadline.get().is_zero() {
            return Err(ConfigError::invalid(
                "attendance.flags_deadline",
                "must be more than 0",
            ));
        }
        if self.retention_sweep_interval.get().is_zero() {
            return Err(ConfigError::invalid(
                "attendance.retention_sweep_interval",
                "must be more than 0",
            ));
        }
        if self.retention_sweep_batch == 0 {
            return Err(ConfigError::invalid(
                "attendance.retention_sweep_batch",
                "must be more than 0",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use cpis_mesh::ConfigSource;
    use cpis_mesh::MeshService;

    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<AttendanceSection, String> {
        let mut source = ConfigSource::empty().with_var(
            "CPIS_PRIVACY_NHS_HASH_KEY",
            "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0",
        );
        for (name, value) in vars {
            source = source.with_var(*name, *value);
        }
        let config = source
            .load::<AttendanceSection>(&crate::Attendance::DEFAULTS)
            .map_err(|e| e.to_string())?;
        config.service.validate().map_err(|e| e.to_string())?;
        Ok(config.service)
    }

    #[test]
    fn the_deadline_and_the_retention_window_are_configurable() {
        let section = load(&[
            ("CPIS_ATTENDANCE_FLAGS_DEADLINE", "750ms"),
            ("CPIS_ATTENDANCE_RETENTION_HISTORY", "730 days"),
            ("CPIS_ATTENDANCE_RETENTION_SWEEP_INTERVAL", "10m"),
            ("CPIS_ATTENDANCE_RETENTION_SWEEP_BATCH", "250"),
        ])
        .unwrap();
        assert_eq!(
            section.retention_sweep_interval.get(),
            std::time::Duration::from_secs(600)
        );
        assert_eq!(section.retention_sweep_batch, 250);
        assert_eq!(
            section.flags_deadline.get(),
            std::time::Duration::from_millis(750)
        );
        assert_eq!(section.retention().history, Window::Days(730));
        let defaults = load(&[]).unwrap();
        assert_eq!(defaults.retention(), RetentionPolicy::default());
    }

    #[test]
    fn a_zero_deadline_is_refused() {
        let error = load(&[("CPIS_ATTENDANCE_FLAGS_DEADLINE", "0s")]).unwrap_err();
        assert!(error.contains("flags_deadline"), "{error}");
        let error = load(&[("CPIS_ATTENDANCE_RETENTION_SWEEP_BATCH", "0")]).unwrap_err();
        assert!(error.contains("retention_sweep_batch"), "{error}");
    }
}
