//! Group commit for outbox events that stand alone: the audit events of reads, which change
//! nothing else and so have no transaction of their own to ride in.
//!
//! Writing each read's event in a transaction of its own costs a statement, a commit and a
//! connection per read. The [`OutboxWriter`] queues the events of concurrent callers and
//! writes together whatever has queued while earlier writes were committing: at most
//! [`PARALLEL_COMMITS`] transactions at once, each taking every caller that waits. Under load
//! many callers share one commit; at low load a caller waits for one commit, as before.
//! Queued events alone wait up to 10 ms for others, so that a busy registry writes its
//! read events ten or more to a statement.
//!
//! [`OutboxWriter::write`] answers once the events are durable: for a read whose answer must
//! not leave before its audit event is stored. [`OutboxWriter::queue`] answers once the events
//! are queued: for a read whose access is recorded durably elsewhere as well (the flag
//! registry's read on behalf of a check, which attendance audits in the check's own commit),
//! so that a second commit does not lengthen the check. Queued events are retried on failure
//! and logged as lost if the database refuses them throughout; a process that dies holds
//! what is queued in memory only.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::Instrument as _;

use super::{NewOutboxEvent, OutboxError, enqueue_postgres, enqueue_sqlite};
use crate::db::{Database, relaxed_commit_pool};

/// How many transactions the writer has in flight at once. Postgres flushes concurrent
/// commits together, so a few in flight keep a caller from waiting for a commit it is not in.
const PARALLEL_COMMITS: usize = 4;

/// How many callers' events one transaction takes at most.
const MAX_CALLERS_PER_COMMIT: usize = 256;

/// How long queued events (nobody waits for their commit) wait for others to share it.
const QUEUED_LINGER: Duration = Duration::from_millis(10);

/// How many callers may queue before new ones wait to.
const QUEUE: usize = 4096;

/// The pauses before a queued (unawaited) batch is written again after a failure.
const RETRIES: [Duration; 3] = [
    Duration::from_millis(100),
    Duration::from_millis(500),
    Duration::from_secs(2),
];

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

type Done = oneshot::Sender<Result<(), Arc<OutboxError>>>;

struct Job {
    events: Vec<NewOutboxEvent>,
    /// The caller waiting for the commit; none for a queued job.
    done: Option<Done>,
}

impl OutboxWriter {
    /// Starts the writer's task on `database`; `committed` runs after every commit (wake the
    /// outbox relay there).
    pub fn spawn(database: Database, committed: impl Fn() + Send + Sync + 'static) -> Self {
        let (jobs, queue) = mpsc::channel(QUEUE);
        let relaxed = match &database {
            Database::Postgres(pool) => Some(Database::Postgres(relaxed_commit_pool(
                pool,
                u32::try_from(PARALLEL_COMMITS).unwrap_or(4),
            ))),
            Database::Sqlite(_) => None,
        };
        let databases = Databases {
            durable: database,
            relaxed,
        };
        tokio::spawn(run(databases, queue, Arc::new(committed)));
        Self { jobs }
    }

    /// Writes `events` durably, in one transaction with other callers' events; answers once
    /// they are committed. On an error nothing of the shared transaction is written, and every
    /// waiting caller in it hears the error.
    pub async fn write(&self, events: Vec<NewOutboxEvent>) -> Result<(), OutboxError> {
        if events.is_empty() {
            return Ok(());
        }
        let (done, written) = oneshot::channel();
        self.send(Job {
            events,
            done: Some(done),
        })
        .await?;
        match written.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(shared)) => Err(OutboxError::Batch(shared.to_string())),
            Err(_) => Err(OutboxError::WriterStopped),
        }
    }

    /// Queues `events` for the next commit and answers at once (see the module's
    /// documentation for when that is enough).
    pub async fn queue(&self, events: Vec<NewOutboxEvent>) -> Result<(), OutboxError> {
        if events.is_empty() {
            return Ok(());
        }
        self.send(Job { events, done: None }).await
    }

    async fn send(&self, job: Job) -> Result<(), OutboxError> {
        self.jobs
            .send(job)
            .await
            .map_err(|_| OutboxError::WriterStopped)
    }
}

type Committed = Arc<dyn Fn() + Send + Sync>;

/// Where batches go: one with a waiting caller commits durably; one of queued events only
/// commits without waiting for the WAL flush where the database allows it (Postgres), since
/// nobody waits for it and the access is recorded durably elsewhere.
#[derive(Clone)]
struct Databases {
    durable: Database,
    relaxed: Option<Database>,
}

async fn run(databases: Databases, mut queue: mpsc::Receiver<Job>, committed: Committed) {
    let slots = Arc::new(Semaphore::new(PARALLEL_COMMITS));
    loop {
        // A free slot first, then whatever has queued (at least one job): callers that arrive
        // while every slot is busy go together into the next transaction.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut batch = Vec::with_capacity(16);
        if queue.recv_many(&mut batch, MAX_CALLERS_PER_COMMIT).await == 0 {
            return;
        }
        linger(&mut queue, &mut batch).await;
        let databases = databases.clone();
        let committed = committed.clone();
        tokio::spawn(async move {
            commit(&databases, batch, &committed).await;
            drop(slot);
        });
    }
}

/// When nobody waits for `batch` (queued events only), gathers what else is queued within
/// [`QUEUED_LINGER`]: one statement for many reads instead of one or two each, at no cost
/// to any caller. A caller that waits for its commit ends the gathering at once.
async fn linger(queue: &mut mpsc::Receiver<Job>, batch: &mut Vec<Job>) {
    let until = tokio::time::Instant::now() + QUEUED_LINGER;
    let mut checked = 0;
    // Only the jobs received since the last look can hold a waiting caller.
    while batch[checked..].iter().all(|job| job.done.is_none())
        && batch.len() < MAX_CALLERS_PER_COMMIT
    {
        checked = batch.len();
        let room = MAX_CALLERS_PER_COMMIT - batch.len();
        match tokio::time::timeout_at(until, queue.recv_many(batch, room)).await {
            // Every sender is gone: write what there is.
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

async fn commit(databases: &Databases, batch: Vec<Job>, committed: &Committed) {
    // The waiting callers' events first, the queued ones after: only those are retried.
    let mut events = Vec::new();
    let mut later = Vec::new();
    let mut waiting = Vec::new();
    for job in batch {
        match job.done {
            Some(done) => {
                waiting.push(done);
                events.extend(job.events);
            }
            None => later.extend(job.events),
        }
    }
    let awaited = events.len();
    events.append(&mut later);
    let database = match (&databases.relaxed, waiting.is_empty()) {
        (Some(relaxed), true) => relaxed,
        _ => &databases.durable,
    };
    let span = tracing::debug_span!(
        "outbox.group_commit",
        callers = waiting.len(),
        events = events.len()
    );
    let result = write(database, &events).instrument(span.clone()).await;
    if result.is_ok() {
        committed();
    }
    let shared: Result<(), String> = result.as_ref().map(|_| ()).map_err(ToString::to_string);
    for done in waiting {
        // A caller that gave up (its deadline passed) no longer listens.
        let _ = done.send(shared.clone().map_err(|e| Arc::new(OutboxError::Batch(e))));
    }
    let Err(mut error) = result else {
        return;
    };
    // Nobody waits for the queued events: try them again before giving them up (a waiting
    // caller heard the error, so its events are not written after all).
    let queued = &events[awaited..];
    if queued.is_empty() {
        return;
    }
    for pause in RETRIES {
        tracing::warn!(%error, events = queued.len(), "outbox group commit failed; retrying");
        tokio::time::sleep(pause).await;
        match write(database, queued).instrument(span.clone()).await {
            Ok(()) => {
                committed();
                return;
            }
            Err(again) => error = again,
        }
    }
    tracing::error!(
        %error,
        events = queued.len(),
        "queued outbox events lost: the database refused them on every attempt"
    );
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
