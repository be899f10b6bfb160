//! Connections a busy path keeps between its uses instead of handing them back to the pool.
//!
//! sqlx pings every connection it takes back (a `Sync` message and the server's answer):
//! on a path that runs one statement per request, that is a second round trip to the
//! database for every request, and a second wake-up of its backend process. A path that
//! keeps its connections and takes one back for its next statement pays neither.
//!
//! The path's statements wait for each other in arrival order (a fair semaphore of as many
//! permits as connections it may keep): a connection the path keeps is not in the pool,
//! so the pool could not hand it to a statement waiting there.
//!
//! A connection goes back to the pool, and through its ping, whenever it is not known to be
//! clean: when its statement failed, or when the future using it was dropped part-way (the
//! ping then waits until the server is ready again, or closes the connection). A connection
//! unused for longer than [`Warm::new`]'s `idle_for` is handed back too, so that the pool's
//! idle timeout and lifetime still govern it.

use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnection, PgPool, Postgres};
use tokio::sync::{Semaphore, SemaphorePermit};

/// Up to `keep` connections of a pool, kept between uses (see the module's documentation).
#[derive(Debug)]
pub struct Warm {
    pool: PgPool,
    /// One per connection the path may use at once (and keep).
    permits: Semaphore,
    idle_for: Duration,
    /// The kept connections, the most recently used last (taken first: its backend is the
    /// most likely to be in the CPU's caches).
    kept: Mutex<Vec<(PoolConnection<Postgres>, Instant)>>,
}

impl Warm {
    /// Uses at most `keep` connections of `pool` at once and keeps them between uses, each
    /// for at most `idle_for` unused. Keep fewer than the pool's size, so that its other
    /// users always find a connection.
    pub fn new(pool: PgPool, keep: usize, idle_for: Duration) -> Self {
        let keep = keep.max(1);
        Self {
            pool,
            permits: Semaphore::new(keep),
            idle_for,
            kept: Mutex::new(Vec::with_capacity(keep)),
        }
    }

    /// For `pool`: all its connections but two (at least one), each kept for at most ten
    /// seconds unused.
    pub fn of(pool: PgPool) -> Self {
        let size = pool.options().get_max_connections();
        let keep = usize::try_from(size.saturating_sub(2)).unwrap_or(1);
        Self::new(pool, keep, Duration::from_secs(10))
    }

    /// A kept connection, or one from the pool, once fewer than `keep` are in use. Waits
    /// at most the pool's acquire timeout.
    pub async fn acquire(&self) -> Result<WarmConnection<'_>, sqlx::Error> {
        let timeout = self.pool.options().get_acquire_timeout();
        let started = Instant::now();
        let permit = match tokio::time::timeout(timeout, self.permits.acquire()).await {
            Ok(Ok(permit)) => permit,
            // The semaphore is never closed.
            Ok(Err(_)) | Err(_) => return Err(sqlx::Error::PoolTimedOut),
        };
        let (conn, stale) = {
            let mut kept = self.lock();
            let now = Instant::now();
            // The oldest are first: those unused for too long are all at the front.
            let fresh = kept
                .iter()
                .position(|(_, since)| now.duration_since(*since) < self.idle_for)
                .unwrap_or(kept.len());
            let stale: Vec<_> = kept.drain(..fresh).collect();
            (kept.pop().map(|(conn, _)| conn), stale)
        };
        // Dropped outside the lock: each goes back to the pool (through its ping).
        drop(stale);
        let conn = match conn {
            Some(conn) => conn,
            None => {
                let left = timeout.saturating_sub(started.elapsed());
                match tokio::time::timeout(left, self.pool.acquire()).await {
                    Ok(conn) => conn?,
                    Err(_) => return Err(sqlx::Error::PoolTimedOut),
                }
            }
        };
        Ok(WarmConnection {
            conn: Some(conn),
            home: self,
            _permit: permit,
        })
    }

    /// The pool the connections come from, for statements that need none kept.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// How many connections are kept now (not in use).
    pub fn kept(&self) -> usize {
        self.lock().len()
    }

    /// The kept connections. A panic while they were held cannot leave the list half
    /// changed (each change is one push, drain or pop), so a poisoned lock is taken as is.
    fn lock(&self) -> MutexGuard<'_, Vec<(PoolConnection<Postgres>, Instant)>> {
        self.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A connection from [`Warm::acquire`]. Call [`WarmConnection::done`] after statements
/// that succeeded: the connection is kept for the next use. Dropped otherwise, it goes back
/// to the pool, through sqlx's ping.
#[derive(Debug)]
pub struct WarmConnection<'w> {
    conn: Option<PoolConnection<Postgres>>,
    home: &'w Warm,
    _permit: SemaphorePermit<'w>,
}

impl WarmConnection<'_> {
    /// The connection is clean (its statements finished): keep it for the next use.
    pub fn done(mut self) {
        if let Some(conn) = self.conn.take() {
            // At most one per permit: never more than `keep`.
            self.home.lock().push((conn, Instant::now()));
        }
    }
}

impl Deref for WarmConnection<'_> {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        self.conn.as_deref().expect("a connection until done")
    }
}

impl DerefMut for WarmConnection<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.conn.as_deref_mut().expect("a connection until done")
    }
}
