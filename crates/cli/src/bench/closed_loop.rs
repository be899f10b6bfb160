//! The closed-loop mode of `cpis bench check` (the default): `--concurrency` workers, each
//! sending a check, waiting for its answer and sending the next; each latency runs from the
//! actual send. It finds the peak rate; for latency at a given rate, see [`super::open_loop`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use cpis_mesh::client::MeshChannel;

use super::report::Phase;
use super::{Limits, Tally, Target, call};

/// Runs `concurrency` closed-loop workers against `target` until `limits`; the merged
/// tally and the elapsed time.
pub(super) async fn load(
    channels: &[MeshChannel],
    concurrency: u32,
    limits: Limits,
    target: Target,
) -> Phase {
    let sent = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let until = limits.duration.map(|d| started + d);
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let channel = channels[worker as usize % channels.len()].clone();
        let sent = Arc::clone(&sent);
        let target = target.clone();
        workers.spawn(async move {
            let mut tally = Tally::default();
            loop {
                if until.is_some_and(|u| Instant::now() >= u) {
                    break;
                }
                let n = sent.fetch_add(1, Ordering::Relaxed);
                if limits.requests.is_some_and(|max| n >= max) {
                    break;
                }
                let begun = Instant::now();
                let outcome = call(&channel, &target, n).await;
                tally.count(outcome, begun.elapsed());
            }
            tally
        });
    }
    let mut total = Tally::default();
    while let Some(done) = workers.join_next().await {
        if let Ok(tally) = done {
            total.merge(tally);
        }
    }
    Phase {
        elapsed: started.elapsed(),
        histogram: total.histogram,
        errors: total.errors,
        flagged: total.flagged,
        first_error: total.first_error,
        schedule: None,
        samples: Vec::new(),
    }
}
