//! Live fan-out: every stored notification reaches the Subscribe streams of every replica.
//!
//! Within a process a `tokio` broadcast channel carries them to the streams. With Redis,
//! the replica that stored a notification publishes it on one pub/sub channel and every
//! replica (itself included) rebroadcasts what it receives, so a subscriber on replica A
//! sees what replica B stored. Fan-out is a fast path only: a stream that misses a message
//! (lag, a Redis reconnect) finds the notification in the database (see `subscribe`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cpis_mesh::health::DependencyCheck;

use cpis_mesh::Shutdown;
use cpis_mesh::server::BoxError;
use cpis_proto::notification::Notification;
use prost::Message;
use redis::aio::ConnectionManager;
use tokio::sync::{broadcast, oneshot};
use tokio_stream::StreamExt;

/// How many live notifications a slow stream may fall behind before it catches up from
/// the database instead.
const LOCAL_CAPACITY: usize = 1024;

/// Carries stored notifications to the live streams.
#[derive(Clone)]
pub struct Fanout {
    local: broadcast::Sender<Arc<Notification>>,
    redis: Option<RedisPublisher>,
}

#[derive(Clone)]
struct RedisPublisher {
    connection: ConnectionManager,
    channel: String,
    /// Whether this replica listens on the channel right now.
    listening: Arc<AtomicBool>,
}

/// Redis answers and this replica listens: without both, it would miss other replicas'
/// notifications, so it reports NOT_SERVING.
struct RedisCheck(RedisPublisher);

impl DependencyCheck for RedisCheck {
    fn name(&self) -> &str {
        "redis"
    }

    fn check(&self) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(async move {
            if !self.0.listening.load(Ordering::SeqCst) {
                return Err("not subscribed to the live channel".to_owned());
            }
            redis::cmd("PING")
                .query_async::<String>(&mut self.0.connection.clone())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}

impl std::fmt::Debug for Fanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fanout")
            .field("redis_channel", &self.redis.as_ref().map(|r| &r.channel))
            .finish_non_exhaustive()
    }
}

impl Fanout {
    /// Fan-out within this process only (one replica).
    pub fn in_process() -> Self {
        Self {
            local: broadcast::channel(LOCAL_CAPACITY).0,
            redis: None,
        }
    }

    /// Fan-out across replicas through Redis pub/sub on `channel`. Returns once this
    /// replica listens on the channel, so that nothing published afterwards is missed.
    pub async fn with_redis(
        url: &str,
        channel: String,
        shutdown: Shutdown,
    ) -> Result<Self, BoxError> {
        let client = redis::Client::open(url)?;
        let connection = ConnectionManager::new(client.clone()).await?;
        let local = broadcast::channel(LOCAL_CAPACITY).0;
        let listening = Arc::new(AtomicBool::new(false));
        let (ready, subscribed) = oneshot::channel();
        tokio::spawn(listen(
            client,
            channel.clone(),
            local.clone(),
            (ready, listening.clone()),
            shutdown,
        ));
        tokio::time::timeout(Duration::from_secs(10), subscribed)
            .await
            .map_err(|_| "Redis pub/sub: no subscription within 10s")?
            .map_err(|_| "Redis pub/sub: the listener stopped")?;
        Ok(Self {
            local,
            redis: Some(RedisPublisher {
                connection,
                channel,
                listening,
            }),
        })
    }

    /// The readiness check of the fan-out's Redis, when it has one.
    pub fn health_check(&self) -> Option<Arc<dyn DependencyCheck>> {
        self.redis
            .clone()
            .map(|redis| Arc::new(RedisCheck(redis)) as Arc<dyn DependencyCheck>)
    }

    /// A receiver of every notification announced from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Notification>> {
        self.local.subscribe()
    }

    /// Announces notifications just stored (with their cursors set).
    pub async fn announce(&self, notifications: Vec<Notification>) {
        match &self.redis {
            Some(redis) => {
                let mut connection = redis.connection.clone();
                for notification in notifications {
                    let sent: Result<i64, _> = redis::cmd("PUBLISH")
                        .arg(&redis.channel)
                        .arg(notification.encode_to_vec())
                        .query_async(&mut connection)
                        .await;
                    if let Err(error) = sent {
                        // Streams poll the database at every keep-alive, so the
                        // notification is late, not lost; local streams get it now.
                        tracing::warn!(%error, "Redis publish failed; live delivery delayed");
                        let _ = self.local.send(Arc::new(notification));
                    }
                }
            }
            None => {
                for notification in notifications {
                    // No receiver is not an error: nobody is subscribed.
                    let _ = self.local.send(Arc::new(notification));
                }
            }
        }
    }
}

/// Rebroadcasts what arrives on the Redis channel, reconnecting until shutdown.
async fn listen(
    client: redis::Client,
    channel: String,
    local: broadcast::Sender<Arc<Notification>>,
    (ready, listening): (oneshot::Sender<()>, Arc<AtomicBool>),
    shutdown: Shutdown,
) {
    let mut ready = Some(ready);
    while !shutdown.is_requested() {
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        }
        .await;
        match subscribed {
            Ok(pubsub) => {
                listening.store(true, Ordering::SeqCst);
                if let Some(ready) = ready.take() {
                    let _ = ready.send(());
                }
                let mut messages = pubsub.into_on_message();
                loop {
                    let message = tokio::select! {
                        () = shutdown.requested() => return,
                        message = messages.next() => message,
                    };
                    let Some(message) = message else { break };
                    match Notification::decode(message.get_payload_bytes()) {
                        Ok(notification) => {
                            let _ = local.send(Arc::new(notification));
                        }
                        Err(error) => tracing::warn!(%error, "undecodable live notification"),
                    }
                }
                listening.store(false, Ordering::SeqCst);
                tracing::warn!("Redis pub/sub connection lost; resubscribing");
            }
            Err(error) => tracing::warn!(%error, "Redis pub/sub unavailable; retrying"),
        }
        tokio::select! {
            () = shutdown.requested() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
