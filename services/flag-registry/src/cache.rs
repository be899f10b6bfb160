//! The `GetFlags` cache: read-through, negative entries included (most children have no
//! flag), never stale after a write.
//!
//! What is cached per NHS number is the list of its stored flags (states are computed on
//! every read, since they change with the date). Keys hold the keyed pseudonym of the
//! number, never the number.
//!
//! Never stale: every write, after its commit, gives the number a new *generation* (a
//! random token). A reader reads the generation and the entry together (one round trip);
//! the entry is a hit only if it was stored under that generation. On a miss it loads the
//! database and stores the answer tagged with the generation it read *before* loading. A
//! write that commits while a read is loading changes the generation, so the loaded answer
//! is tagged with an old generation and no reader takes it. A read after a successful
//! write therefore sees the new generation and goes to the database.
//!
//! Redis is optional: without it a bounded in-process cache applies the same rule (one
//! epoch counter for the process). A Redis failure is logged and the read goes to the
//! database; Redis never turns a read into an error.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cpis_proto::common;
use cpis_proto::flags::GetFlagsResponse;
use prost::Message;
use redis::aio::ConnectionManager;

/// How long one Redis round trip may take before the read goes to the database.
const REDIS_TIMEOUT: Duration = Duration::from_millis(500);

/// The cache of stored flags per NHS number (keyed by its pseudonym).
#[derive(Clone)]
pub struct FlagCache {
    backend: Backend,
    ttl: Duration,
}

impl std::fmt::Debug for FlagCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.backend {
            Backend::Redis(_) => "redis",
            Backend::Memory(_) => "memory",
        };
        f.debug_struct("FlagCache")
            .field("backend", &kind)
            .field("ttl", &self.ttl)
            .finish()
    }
}

#[derive(Clone)]
enum Backend {
    Redis(Arc<RedisBackend>),
    Memory(Arc<Mutex<MemoryBackend>>),
}

struct RedisBackend {
    client: redis::Client,
    prefix: String,
    // Made on first use (and again after a failed attempt), so that the service starts,
    // and serves from the database, while Redis is down.
    connection: tokio::sync::Mutex<Option<ConnectionManager>>,
}

#[derive(Default)]
struct MemoryBackend {
    capacity: usize,
    epoch: u64,
    entries: HashMap<String, Vec<common::Flag>>,
    order: VecDeque<String>,
}

impl FlagCache {
    /// A cache in Redis at `url`, every key under `prefix`.
    pub fn redis(url: &str, prefix: &str, ttl: Duration) -> Result<Self, redis::RedisError> {
        Ok(Self {
            backend: Backend::Redis(Arc::new(RedisBackend {
                client: redis::Client::open(url)?,
                prefix: prefix.to_owned(),
                connection: tokio::sync::Mutex::new(None),
            })),
            ttl,
        })
    }

    /// A cache in this process holding at most `capacity` numbers.
    pub fn memory(capacity: usize, ttl: Duration) -> Self {
        Self {
            backend: Backend::Memory(Arc::new(Mutex::new(MemoryBackend {
                capacity: capacity.max(1),
                ..MemoryBackend::default()
            }))),
            ttl,
        }
    }

    /// The flags under `key`, from the cache or else from `load` (whose answer is cached).
    pub async fn get_or_load<E, F, Fut>(&self, key: &str, load: F) -> Result<Vec<common::Flag>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<common::Flag>, E>>,
    {
        match &self.backend {
            Backend::Memory(memory) => {
                let epoch = {
                    let cache = lock(memory);
                    if let Some(flags) = cache.entries.get(key) {
                        return Ok(flags.clone());
                    }
                    cache.epoch
                };
                let flags = load().await?;
                let mut cache = lock(memory);
                if cache.epoch == epoch {
                    cache.insert(key, flags.clone());
                }
                Ok(flags)
            }
            Backend::Redis(redis) => {
                let generation = match redis.lookup(key).await {
                    Ok(Lookup::Hit(flags)) => return Ok(flags),
                    Ok(Lookup::Miss { generation }) => Some(generation),
                    Err(error) => {
                        tracing::warn!(%error, "flag cache unavailable; reading the database");
                        None
                    }
                };
                let flags = load().await?;
                if let Some(generation) = generation
                    && let Err(error) = redis.store(key, &generation, &flags, self.ttl).await
                {
                    tracing::warn!(%error, "flag cache unavailable; answer not cached");
                }
                Ok(flags)
            }
        }
    }

    /// Forgets what is cached under `key`; call after the write's commit.
    pub async fn invalidate(&self, key: &str) {
        match &self.backend {
            Backend::Memory(memory) => {
                let mut cache = lock(memory);
                cache.epoch += 1;
                cache.entries.remove(key);
            }
            Backend::Redis(redis) => {
                if let Err(error) = redis.invalidate(key, self.ttl).await {
                    // Bounded by the entries' time to live (flags.cache_ttl).
                    tracing::error!(%error, "flag cache invalidation failed");
                }
            }
        }
    }
}

fn lock(memory: &Mutex<MemoryBackend>) -> std::sync::MutexGuard<'_, MemoryBackend> {
    memory
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl MemoryBackend {
    fn insert(&mut self, key: &str, flags: Vec<common::Flag>) {
        if self.entries.insert(key.to_owned(), flags).is_none() {
            self.order.push_back(key.to_owned());
        }
        // Oldest first out; keys already invalidated just fall out of the queue.
        while self.entries.len() > self.capacity {
            match self.order.pop_front() {
                Some(oldest) => {
                    self.entries.remove(&oldest);
                }
                None => break,
            }
        }
        if self.order.len() > self.capacity.saturating_mul(2) {
            let entries = &self.entries;
            self.order.retain(|k| entries.contains_key(k));
        }
    }
}

enum Lookup {
    Hit(Vec<common::Flag>),
    Miss { generation: String },
}

/// A Redis failure (or timeout).
#[derive(Debug, thiserror::Error)]
#[error("redis: {0}")]
struct CacheError(String);

impl From<redis::RedisError> for CacheError {
    fn from(error: redis::RedisError) -> Self {
        Self(error.to_string())
    }
}

impl RedisBackend {
    async fn connection(&self) -> Result<ConnectionManager, CacheError> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref() {
            return Ok(connection.clone());
        }
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(1);
        let connection = tokio::time::timeout(
            REDIS_TIMEOUT * 2,
            ConnectionManager::new_with_config(self.client.clone(), config),
        )
        .await
        .map_err(|_| CacheError("connect timed out".to_owned()))??;
        *slot = Some(connection.clone());
        Ok(connection)
    }

    fn generation_key(&self, key: &str) -> String {
        format!("{}gen:{key}", self.prefix)
    }

    /// The number's one entry: its flags and the generation they were loaded under.
    fn entry_key(&self, key: &str) -> String {
        format!("{}entry:{key}", self.prefix)
    }

    async fn lookup(&self, key: &str) -> Result<Lookup, CacheError> {
        let mut connection = self.connection().await?;
        let (generation, entry): (Option<String>, Option<Vec<u8>>) = timed(
            redis::cmd("MGET")
                .arg(self.generation_key(key))
                .arg(self.entry_key(key))
                .query_async(&mut connection),
        )
        .await?;
        let generation = generation.unwrap_or_else(|| INITIAL_GENERATION.to_owned());
        match entry.as_deref().and_then(|bytes| untag(bytes, &generation)) {
            Some(flags) => Ok(Lookup::Hit(flags)),
            None => Ok(Lookup::Miss { generation }),
        }
    }

    async fn store(
        &self,
        key: &str,
        generation: &str,
        flags: &[common::Flag],
        ttl: Duration,
    ) -> Result<(), CacheError> {
        let mut connection = self.connection().await?;
        timed(
            redis::cmd("SET")
                .arg(self.entry_key(key))
                .arg(tag(generation, flags))
                .arg("PX")
                .arg(millis(ttl))
                .query_async::<()>(&mut connection),
        )
        .await
    }

    async fn invalidate(&self, key: &str, ttl: Duration) -> Result<(), CacheError> {
        let mut connection = self.connection().await?;
        // The generation outlives every entry made under an earlier one, so that when it
        // expires no entry of the generation before it can still be read.
        let keep = (ttl * 2).max(Duration::from_secs(86_400));
        timed(
            redis::cmd("SET")
                .arg(self.generation_key(key))
                .arg(uuid::Uuid::new_v4().simple().to_string())
                .arg("PX")
                .arg(millis(keep))
                .query_async::<()>(&mut connection),
        )
        .await
    }
}

/// The generation of a number no write has touched (or whose generation has expired).
const INITIAL_GENERATION: &str = "0";

/// An entry's bytes: the generation its flags were loaded under, a NUL, then the flags as
/// a `GetFlagsResponse`. Generations are hex or [`INITIAL_GENERATION`]: never a NUL.
fn tag(generation: &str, flags: &[common::Flag]) -> Vec<u8> {
    let answer = GetFlagsResponse {
        flags: flags.to_vec(),
        evaluation_date: None,
    }
    .encode_to_vec();
    [generation.as_bytes(), &[0], &answer].concat()
}

/// The flags of an entry's bytes if it was stored under `generation` (and decodes).
fn untag(bytes: &[u8], generation: &str) -> Option<Vec<common::Flag>> {
    let flags = bytes
        .strip_prefix(generation.as_bytes())?
        .strip_prefix(&[0])?;
    GetFlagsResponse::decode(flags)
        .ok()
        .map(|answer| answer.flags)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

async fn timed<T>(
    command: impl Future<Output = Result<T, redis::RedisError>>,
) -> Result<T, CacheError> {
    tokio::time::timeout(REDIS_TIMEOUT, command)
        .await
        .map_err(|_| CacheError("timed out".to_owned()))?
        .map_err(CacheError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(id: &str) -> Vec<common::Flag> {
        vec![common::Flag {
            flag_id: id.to_owned(),
            ..common::Flag::default()
        }]
    }

    #[test]
    fn an_entry_is_taken_only_under_the_generation_it_was_stored_under() {
        let generation = uuid::Uuid::new_v4().simple().to_string();
        let entry = tag(&generation, &flags("f-1"));
        assert_eq!(untag(&entry, &generation), Some(flags("f-1")));
        // Stored under the initial generation, read after a write: a miss.
        let entry = tag(INITIAL_GENERATION, &flags("f-1"));
        assert_eq!(untag(&entry, &generation), None);
        // A generation that starts with the stored one is not it.
        assert_eq!(untag(&entry, &format!("{INITIAL_GENERATION}1")), None);
        let longer = tag(&format!("{INITIAL_GENERATION}1"), &flags("f-1"));
        assert_eq!(untag(&longer, INITIAL_GENERATION), None);
    }

    #[test]
    fn a_negative_entry_is_an_empty_hit_and_bytes_of_another_shape_a_miss() {
        assert_eq!(untag(&tag("0", &[]), "0"), Some(Vec::new()));
        // No tag at all (an untagged answer), or garbage after the tag.
        let bare = GetFlagsResponse {
            flags: flags("f-1"),
            evaluation_date: None,
        }
        .encode_to_vec();
        assert_eq!(untag(&bare, "0"), None);
        assert_eq!(untag(b"0\0\xff\xff\xff", "0"), None);
    }
}
