//! `Subscribe`: one authority's notifications from a cursor, backlog then live.
//!
//! The stream tracks one number, the inbox place it has reached. Backlog and live events
//! are both read "after that place", and a live event is taken as it comes only when it is
//! the very next place; anything else (a gap, a lag, a lost Redis message) is read from the
//! database. So the seam has neither a gap nor a duplicate. A folded repeat is announced
//! again with its place and a higher count: a stream that has passed that place sends it
//! again (receivers keep the latest by id). At every keep-alive the stream
//! also reads the database, which bounds how late a notification whose fan-out was lost
//! can be.

use std::sync::Arc;
use std::time::Duration;

use cpis_mesh::Shutdown;
use cpis_proto::notification::{KeepAlive, Notification, SubscribeResponse, subscribe_response};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tonic::Status;

use crate::convert::{self, now_us, timestamp};
use crate::cursor;
use crate::store::{InboxQuery, NotificationStore};

/// How many rows one catch-up read takes at a time.
const PAGE: u32 = 500;

/// One subscription's settings.
pub(crate) struct Stream<S> {
    pub(crate) store: S,
    pub(crate) authority: String,
    pub(crate) kinds: Vec<i32>,
    /// The inbox place reached.
    pub(crate) after: i64,
    pub(crate) keep_alive: Duration,
    pub(crate) shutdown: Shutdown,
}

type Sender = mpsc::Sender<Result<SubscribeResponse, Status>>;

/// Why a stream ends.
#[derive(Debug)]
enum End {
    /// The client went away.
    Gone,
    /// The service ends it with this status.
    Fail(Status),
}

impl<S: NotificationStore> Stream<S> {
    async fn send(&mut self, tx: &Sender, n: Notification, seq: i64) -> Result<(), End> {
        self.after = seq;
        if !self.kinds.is_empty() && !self.kinds.contains(&n.kind) {
            return Ok(());
        }
        let message = SubscribeResponse {
            event: Some(subscribe_response::Event::Notification(n)),
        };
        tx.send(Ok(message)).await.map_err(|_| End::Gone)
    }

    /// Sends everything stored after the place reached; whether anything was stored.
    async fn catch_up(&mut self, tx: &Sender) -> Result<bool, End> {
        let mut any = false;
        loop {
            let query = InboxQuery {
                authority: self.authority.clone(),
                after_seq: self.after,
                unacknowledged_only: false,
                kinds: Vec::new(),
                limit: PAGE,
            };
            let rows = self
                .store
                .list(&query)
                .await
                .map_err(|e| End::Fail(cpis_mesh::ApiError::from(e).into()))?;
            for row in &rows {
                let n = convert::notification(row).map_err(|e| End::Fail(e.into()))?;
                self.send(tx, n, row.seq).await?;
                any = true;
            }
            if rows.len() < PAGE as usize {
                return Ok(any);
            }
        }
    }

    /// A live notification: sent when it is the next place, skipped when already sent,
    /// read from the database (with whatever came before it) otherwise. Whether the
    /// stream moved on.
    async fn live(&mut self, tx: &Sender, n: Arc<Notification>) -> Result<bool, End> {
        let ours = n
            .authority
            .as_ref()
            .is_some_and(|a| a.value == self.authority);
        let Some(seq) = cursor::decode(&n.cursor).filter(|_| ours) else {
            return Ok(false);
        };
        if seq <= self.after {
            // A notification already sent that a repeated attendance was folded into
            // (only folds are announced again): sent again, with its new count.
            if n.occurrence_count > 1 && (self.kinds.is_empty() || self.kinds.contains(&n.kind)) {
                let message = SubscribeResponse {
                    event: Some(subscribe_response::Event::Notification(
                        Arc::unwrap_or_clone(n),
                    )),
                };
                tx.send(Ok(message)).await.map_err(|_| End::Gone)?;
                return Ok(true);
            }
            Ok(false)
        } else if seq == self.after + 1 {
            self.send(tx, Arc::unwrap_or_clone(n), seq)
                .await
                .map(|()| true)
        } else {
            self.catch_up(tx).await
        }
    }

    async fn run(
        &mut self,
        mut live: broadcast::Receiver<Arc<Notification>>,
        tx: &Sender,
    ) -> Result<(), End> {
        self.catch_up(tx).await?;
        let mut idle_until = Instant::now() + self.keep_alive;
        loop {
            tokio::select! {
                () = self.shutdown.requested() => {
                    return Err(End::Fail(Status::unavailable("the service is shutting down; resubscribe with the last cursor")));
                }
                () = tx.closed() => return Err(End::Gone),
                received = live.recv() => {
                    let moved = match received {
                        Ok(n) => self.live(tx, n).await?,
                        Err(broadcast::error::RecvError::Lagged(_)) => self.catch_up(tx).await?,
                        Err(broadcast::error::RecvError::Closed) => {
                            return Err(End::Fail(Status::unavailable("live fan-out stopped; resubscribe with the last cursor")));
                        }
                    };
                    // Other authorities' traffic does not count as activity.
                    if moved {
                        idle_until = Instant::now() + self.keep_alive;
                    }
                }
                () = tokio::time::sleep_until(idle_until) => {
                    if !self.catch_up(tx).await? {
                        let keep_alive = SubscribeResponse {
                            event: Some(subscribe_response::Event::KeepAlive(KeepAlive {
                                time: Some(timestamp(now_us())),
                                cursor: cursor::encode(self.after),
                            })),
                        };
                        tx.send(Ok(keep_alive)).await.map_err(|_| End::Gone)?;
                    }
                    idle_until = Instant::now() + self.keep_alive;
                }
            }
        }
    }
}

/// Runs one subscription until the client goes away or the service ends it.
pub(crate) async fn stream<S: NotificationStore>(
    mut stream: Stream<S>,
    live: broadcast::Receiver<Arc<Notification>>,
    tx: Sender,
) {
    if let Err(End::Fail(status)) = stream.run(live, &tx).await {
        let _ = tx.send(Err(status)).await;
    }
}

#[cfg(test)]
mod tests {
    use cpis_mesh::db::{Database, DatabaseSettings};
    use cpis_proto::common::OdsCode;
    use prost::Message;
    use uuid::Uuid;

    use super::*;
    use crate::store::sqlite::SqliteNotificationStore;
    use crate::store::{NewNotification, StoredNotification};

    async fn store(dir: &std::path::Path) -> SqliteNotificationStore {
        let url = format!("sqlite:{}", dir.join("n.db").display());
        let db = Database::connect(&DatabaseSettings::new(url))
            .await
            .unwrap();
        db.migrate(&crate::MIGRATIONS).await.unwrap();
        match db {
            Database::Sqlite(pool) => SqliteNotificationStore::new(pool),
            Database::Postgres(_) => unreachable!(),
        }
    }

    async fn publish(store: &SqliteNotificationStore, n: usize) -> Vec<StoredNotification> {
        let new = (0..n)
            .map(|_| {
                let body = Notification {
                    authority: Some(OdsCode {
                        value: "E09000033".into(),
                    }),
                    kind: 1,
                    ..Notification::default()
                };
                NewNotification {
                    notification_id: Uuid::now_v7(),
                    event_id: Some(Uuid::now_v7()),
                    authority: "E09000033".into(),
                    kind: 1,
                    body: body.encode_to_vec(),
                    occur_time_us: 0,
                    fold_key: None,
                    escalate_at_us: None,
                }
            })
            .collect();
        store.publish(new, 0, 0).await.unwrap().stored
    }

    fn places(rx: &mut mpsc::Receiver<Result<SubscribeResponse, Status>>) -> Vec<i64> {
        let mut places = Vec::new();
        while let Ok(message) = rx.try_recv() {
            if let Some(subscribe_response::Event::Notification(n)) = message.unwrap().event {
                places.push(cursor::decode(&n.cursor).unwrap());
            }
        }
        places
    }

    #[tokio::test]
    async fn the_seam_drops_what_was_sent_and_fills_a_gap_from_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let backlog = publish(&store, 3).await;
        let (tx, mut rx) = mpsc::channel(16);
        let mut stream = Stream {
            store: store.clone(),
            authority: "E09000033".into(),
            kinds: Vec::new(),
            after: 1,
            keep_alive: Duration::from_secs(30),
            shutdown: Shutdown::new(),
        };
        assert!(stream.catch_up(&tx).await.unwrap());
        assert_eq!(places(&mut rx), vec![2, 3]);

        // Announced after the backlog read it: not sent again.
        let seen = convert::notification(&backlog[2]).unwrap();
        assert!(!stream.live(&tx, Arc::new(seen)).await.unwrap());
        assert_eq!(places(&mut rx), Vec::<i64>::new());

        // The announcement of 4 was lost; 5 arrives: 4 comes from the store, then 5.
        let later = publish(&store, 2).await;
        let fifth = convert::notification(&later[1]).unwrap();
        assert!(stream.live(&tx, Arc::new(fifth)).await.unwrap());
        assert_eq!(places(&mut rx), vec![4, 5]);

        // The next place is taken as it comes.
        let sixth = publish(&store, 1).await;
        let sixth = convert::notification(&sixth[0]).unwrap();
        assert!(stream.live(&tx, Arc::new(sixth)).await.unwrap());
        assert_eq!(places(&mut rx), vec![6]);
        assert_eq!(stream.after, 6);
    }
}
