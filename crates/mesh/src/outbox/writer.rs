//! Group commit for outbox events that stand alone: the audit events of reads, which change
//! nothing else and so have no transaction of their own to ride in.
//!
//! Writing each read's event in its own transaction costs a durable commit per read: on a
//! busy service that is one WAL flush per request, the dominant cost of a cached read. The
//! [`OutboxWriter`] queues the events of concurrent callers and writes whatever has queued
//! while the previous write was committing in one transaction. Each caller still waits until
//! its events are durable before it answers, so nothing is answered that is not audited; under
//! load, many callers share one commit. At low load a caller waits for exactly one commit, as
//! before.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tracing::Instrument as _;

use super::{NewOutboxEvent, OutboxError, enqueue_postgres, enqueue_sqlite};
use crate::db::Database;

/// How many callers' events one transaction takes at most.
const MAX_CALLERS_PER_COMMIT: usize = 256;

/// How many callers may wait for a commit before new ones wait to queue.
const QUEUE: usize = 4096;

/// Writes standalone outbox events with group commit (see the module's documentation).
/// Cloning shares the writer; its task ends when the last clone is dropped.
#[derive(Clone)]
pub struct OutboxWriter {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for OutboxWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxWriter").finish_non_exhaustive()
    }
}

struct Job {
    events: Vec<NewOutboxEvent>,
    done: oneshot::Sender<Result<(), Arc<OutboxError>>>,
}

impl OutboxWriter {
    /// Starts the writer's task on `database`; `committed` runs after every commit (wake the
    /// outbox relay there).
    pub fn spawn(database: Database, committed: impl Fn() + Send + Sync + 'static) -> Self {
        let (jobs, queue) = mpsc::channel(QUEUE);
        tokio::spawn(run(database, queue, committed));
        Self { jobs }
    }

    /// Writes `events` durably, in one transaction with other callers' events; answers once
    /// they are committed. On an error nothing of the shared transaction is written, and every
    /// caller in it hears the error.
    pub async fn write(&self, events: Vec<NewOutboxEvent>) -> Result<(), OutboxError> {
        if events.is_empty() {
            return Ok(());
        }
        let (done, written) = oneshot::channel();
        self.jobs
            .send(Job { events, done })
            .await
            .map_err(|_| OutboxError::WriterStopped)?;
        match written.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(shared)) => Err(OutboxError::Batch(shared.to_string())),
            Err(_) => Err(OutboxError::WriterStopped),
        }
    }
}

async fn run(
    database: Database,
    mut queue: mpsc::Receiver<Job>,
    committed: impl Fn() + Send + Sync + 'static,
) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_CALLERS_PER_COMMIT);
    // `recv_many` takes what has queued (at least one job), up to the limit, without waiting
    // for more: whatever arrived during the previous commit goes into the next.
    while queue
        .recv_many(&mut batch, MAX_CALLERS_PER_COMMIT)
        .await
        .gt(&0)
    {
        let events: Vec<NewOutboxEvent> = batch
            .iter_mut()
            .flat_map(|job| std::mem::take(&mut job.events))
            .collect();
        let span = tracing::debug_span!(
            "outbox.group_commit",
            callers = batch.len(),
            events = events.len()
        );
        let result = write(&database, &events).instrument(span).await;
        if result.is_ok() {
            committed();
        }
        let result = result.map_err(Arc::new);
        for job in batch.drain(..) {
            // A caller that gave up (its deadline passed) no longer listens; its events are
            // written all the same.
            let _ = job.done.send(result.clone());
        }
    }
}

async fn write(database: &Database, events: &[NewOutboxEvent]) -> Result<(), OutboxError> {
    match database {
        Database::Postgres(pool) => {
            // One statement (UNNEST) is atomic on its own: no BEGIN and COMMIT round trips.
            let mut conn = pool.acquire().await?;
            enqueue_postgres(&mut conn, events).await
        }
        Database::Sqlite(pool) => {
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
            enqueue_sqlite(&mut tx, events).await?;
            tx.commit().await?;
            Ok(())
        }
    }
}
