//! Shutdown: one signal shared by every part of a process.

use std::sync::Arc;

use tokio::sync::watch;

/// A shutdown signal: triggered once (by SIGTERM, SIGINT or a caller), observed by many.
#[derive(Debug, Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
    rx: watch::Receiver<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A signal not yet triggered.
    pub fn new() -> Self {
        let (tx, rx) = watch::channel(false);
        Self {
            tx: Arc::new(tx),
            rx,
        }
    }

    /// Triggers shutdown; later calls do nothing.
    pub fn trigger(&self) {
        self.tx
            .send_if_modified(|requested| !std::mem::replace(requested, true));
    }

    /// Whether shutdown was triggered.
    pub fn is_requested(&self) -> bool {
        *self.rx.borrow()
    }

    /// Completes once shutdown is triggered.
    pub async fn requested(&self) {
        let mut rx = self.rx.clone();
        // The sender lives as long as any clone of `self`, so waiting cannot fail.
        let _ = rx.wait_for(|requested| *requested).await;
    }

    /// Triggers this signal on SIGTERM or SIGINT (Ctrl-C).
    pub fn trigger_on_signals(&self) {
        let shutdown = self.clone();
        tokio::spawn(async move {
            let signal = wait_for_signal().await;
            tracing::info!(signal, "shutdown requested");
            shutdown.trigger();
        });
    }
}

#[cfg(unix)]
async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        },
        _ => {
            let _ = tokio::signal::ctrl_c().await;
            "ctrl-c"
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> &'static str {
    let _ = tokio::signal::ctrl_c().await;
    "ctrl-c"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_clone_sees_the_trigger() {
        let shutdown = Shutdown::new();
        let observer = shutdown.clone();
        assert!(!observer.is_requested());
        let waiter = tokio::spawn(async move { observer.requested().await });
        shutdown.trigger();
        shutdown.trigger();
        waiter.await.unwrap();
        assert!(shutdown.is_requested());
    }
}
