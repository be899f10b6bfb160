//! Failed sign-ins, counted per username and per calling system within a window; reaching a
//! limit locks that username or system out for a while. In Redis when configured (shared by
//! every replica), in memory otherwise (one replica).
//!
//! Usernames are counted whether or not they exist, so a lockout tells nothing about that;
//! they appear in Redis only as SHA-256 digests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use cpis_mesh::health::DependencyCheck;
use futures_util::future::BoxFuture;
use redis::aio::ConnectionManager;
use tokio::time::Instant;

/// The limits.
#[derive(Debug, Clone, Copy)]
pub struct LimitSettings {
    /// Failures of one username within `window` that lock it.
    pub username_limit: u32,
    /// Failures from one calling system within `window` that lock it.
    pub system_limit: u32,
    /// The counting window.
    pub window: Duration,
    /// How long a lockout lasts.
    pub lockout: Duration,
}

/// The limiter could not answer (Redis down): sign-ins are refused rather than unlimited.
#[derive(Debug, Clone, thiserror::Error)]
#[error("sign-in limits unavailable: {0}")]
pub struct LimiterError(String);

impl From<redis::RedisError> for LimiterError {
    fn from(error: redis::RedisError) -> Self {
        Self(error.to_string())
    }
}

/// Counts failures, and in one step locks when the limit is reached.
const RECORD_FAILURE: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
if n >= tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
  redis.call('DEL', KEYS[1])
end
return n
";

/// Where failures are counted.
#[derive(Clone)]
pub struct SignInLimiter {
    settings: LimitSettings,
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Memory(Arc<Mutex<Counters>>),
    Redis {
        connection: ConnectionManager,
        prefix: String,
    },
}

impl std::fmt::Debug for SignInLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backend = match self.backend {
            Backend::Memory(_) => "memory",
            Backend::Redis { .. } => "redis",
        };
        f.debug_struct("SignInLimiter")
            .field("backend", &backend)
            .field("settings", &self.settings)
            .finish()
    }
}

#[derive(Default)]
struct Counters {
    failures: HashMap<String, (u32, Instant)>,
    locks: HashMap<String, Instant>,
}

/// What is counted: one username or one calling system.
#[derive(Debug, Clone, Copy)]
enum Subject<'a> {
    Username(&'a str),
    System(&'a str),
}

impl Subject<'_> {
    fn key(self) -> String {
        match self {
            // Digests keep usernames out of Redis and bound the key's length.
            Self::Username(name) => format!("user:{}", digest(&name.trim().to_lowercase())),
            Self::System(system) => format!("system:{}", digest(system)),
        }
    }
}

fn digest(text: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, text.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl SignInLimiter {
    /// Limits kept in this process.
    pub fn memory(settings: LimitSettings) -> Self {
        Self {
            settings,
            backend: Backend::Memory(Arc::default()),
        }
    }

    /// Limits kept in Redis at `url`, every key under `prefix`.
    pub async fn redis(
        url: &str,
        prefix: &str,
        settings: LimitSettings,
    ) -> Result<Self, LimiterError> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2);
        let connection = ConnectionManager::new_with_config(client, config).await?;
        Ok(Self {
            settings,
            backend: Backend::Redis {
                connection,
                prefix: prefix.to_owned(),
            },
        })
    }

    /// Whether the username or the calling system is locked out now.
    pub async fn is_locked(&self, username: &str, system: &str) -> Result<bool, LimiterError> {
        let keys = [
            Subject::Username(username).key(),
            Subject::System(system).key(),
        ];
        match &self.backend {
            Backend::Memory(counters) => {
                let now = Instant::now();
                let counters = counters.lock().unwrap_or_else(PoisonError::into_inner);
                Ok(keys
                    .iter()
                    .any(|k| counters.locks.get(k).is_some_and(|until| *until > now)))
            }
            Backend::Redis { connection, prefix } => {
                let locked: u32 = redis::cmd("EXISTS")
                    .arg(format!("{prefix}lock:{}", keys[0]))
                    .arg(format!("{prefix}lock:{}", keys[1]))
                    .query_async(&mut connection.clone())
                    .await?;
                Ok(locked > 0)
            }
        }
    }

    /// Counts a failed sign-in against the username and the calling system.
    pub async fn record_failure(&self, username: &str, system: &str) -> Result<(), LimiterError> {
        let s = self.settings;
        self.fail(Subject::Username(username), s.username_limit)
            .await?;
        self.fail(Subject::System(system), s.system_limit).await
    }

    /// Forgets the username's failures after a successful sign-in.
    pub async fn record_success(&self, username: &str) -> Result<(), LimiterError> {
        let key = Subject::Username(username).key();
        match &self.backend {
            Backend::Memory(counters) => {
                counters
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .failures
                    .remove(&key);
                Ok(())
            }
            Backend::Redis { connection, prefix } => {
                redis::cmd("DEL")
                    .arg(format!("{prefix}fail:{key}"))
                    .query_async::<()>(&mut connection.clone())
                    .await?;
                Ok(())
            }
        }
    }

    async fn fail(&self, subject: Subject<'_>, limit: u32) -> Result<(), LimiterError> {
        let key = subject.key();
        let s = self.settings;
        match &self.backend {
            Backend::Memory(counters) => {
                let now = Instant::now();
                let mut counters = counters.lock().unwrap_or_else(PoisonError::into_inner);
                if counters.failures.len() > 100_000 {
                    counters.failures.retain(|_, (_, until)| *until > now);
                    counters.locks.retain(|_, until| *until > now);
                }
                let entry = counters
                    .failures
                    .entry(key.clone())
                    .or_insert((0, now + s.window));
                if entry.1 <= now {
                    *entry = (0, now + s.window);
                }
                entry.0 += 1;
                if entry.0 >= limit {
                    counters.failures.remove(&key);
                    counters.locks.insert(key, now + s.lockout);
                }
                Ok(())
            }
            Backend::Redis { connection, prefix } => {
                redis::cmd("EVAL")
                    .arg(RECORD_FAILURE)
                    .arg(2)
                    .arg(format!("{prefix}fail:{key}"))
                    .arg(format!("{prefix}lock:{key}"))
                    .arg(millis(s.window))
                    .arg(limit)
                    .arg(millis(s.lockout))
                    .query_async::<i64>(&mut connection.clone())
                    .await?;
                Ok(())
            }
        }
    }

    /// A health dependency on Redis, when the limits live there.
    pub fn health_check(&self) -> Option<Arc<dyn DependencyCheck>> {
        match &self.backend {
            Backend::Memory(_) => None,
            Backend::Redis { connection, .. } => Some(Arc::new(RedisCheck(connection.clone()))),
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

struct RedisCheck(ConnectionManager);

impl DependencyCheck for RedisCheck {
    fn name(&self) -> &str {
        "redis"
    }

    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            redis::cmd("PING")
                .query_async::<String>(&mut self.0.clone())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> LimitSettings {
        LimitSettings {
            username_limit: 3,
            system_limit: 5,
            window: Duration::from_secs(60),
            lockout: Duration::from_millis(200),
        }
    }

    #[tokio::test]
    async fn memory_limits_lock_and_release() {
        let limiter = SignInLimiter::memory(settings());
        for _ in 0..2 {
            limiter
                .record_failure("alice", "org:RJ1/ehr")
                .await
                .unwrap();
        }
        assert!(!limiter.is_locked("alice", "org:RJ1/ehr").await.unwrap());
        limiter
            .record_failure("Alice", "org:RJ1/ehr")
            .await
            .unwrap();
        assert!(limiter.is_locked("alice", "org:RJ2/ehr").await.unwrap());
        assert!(!limiter.is_locked("bob", "org:RJ2/ehr").await.unwrap());
        // Five failures from one system lock it for every username.
        for name in ["c", "d"] {
            limiter.record_failure(name, "org:RJ1/ehr").await.unwrap();
        }
        assert!(limiter.is_locked("bob", "org:RJ1/ehr").await.unwrap());
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(!limiter.is_locked("alice", "org:RJ1/ehr").await.unwrap());
    }

    #[tokio::test]
    async fn a_success_forgets_earlier_failures() {
        let limiter = SignInLimiter::memory(settings());
        for _ in 0..2 {
            limiter.record_failure("alice", "s").await.unwrap();
        }
        limiter.record_success("alice").await.unwrap();
        limiter.record_failure("alice", "s").await.unwrap();
        assert!(!limiter.is_locked("alice", "t").await.unwrap());
    }
}
