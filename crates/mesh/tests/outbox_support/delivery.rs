//! The relay's cases of the contract suite: delivery through outages, crashes, concurrent
//! relays, order, backoff, rejected events, metrics and wake-ups. Run against both stores
//! by the `contract!` macro of `tests/outbox.rs`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use cpis_mesh::Shutdown;
use cpis_mesh::metrics::Metrics;
use cpis_mesh::outbox::{
    AUDIT, Backoff, NewOutboxEvent, OutboxMetrics, OutboxRelay, RelaySettings,
};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Consumer, Fixture, PATIENCE, POISON, events, eventually, fast, relay, sample};

pub async fn a_destination_down_while_100_events_are_written_gets_each_once(fx: Fixture) {
    let consumer = Consumer::down();
    let relay = relay(fx.store.clone(), Arc::new(consumer.clone()), fast("relay"));
    let notifier = relay.notifier();
    let shutdown = Shutdown::new();
    let running = relay.spawn(shutdown.clone());

    let mut written = HashSet::new();
    for _ in 0..20 {
        let batch = events(5);
        written.extend(batch.iter().map(NewOutboxEvent::id));
        fx.write(&batch, true).await;
        notifier.notify();
    }
    assert!(eventually(PATIENCE, || async { consumer.calls() >= 3 }).await);
    assert!(consumer.stored().is_empty());

    consumer.set_up(true);
    assert!(eventually(PATIENCE, || async { fx.rows().await.is_empty() }).await);
    let stored = consumer.stored();
    assert_eq!(stored.len(), 100);
    assert_eq!(stored.into_iter().collect::<HashSet<_>>(), written);
    shutdown.trigger();
    running.await.unwrap();
}

pub async fn a_relay_killed_mid_batch_loses_nothing(fx: Fixture) {
    let written = events(30);
    fx.write(&written, true).await;
    let consumer = Consumer::up();
    let settings = || RelaySettings {
        lease: Duration::from_millis(600),
        ..fast("relay")
    };

    // The destination stores the first batch, then the relay dies before hearing back.
    let doomed = relay(fx.store.clone(), Arc::new(consumer.hanging()), settings());
    let running = doomed.spawn(Shutdown::new());
    assert!(eventually(PATIENCE, || async { !consumer.deliveries().is_empty() }).await);
    running.abort();
    assert!(running.await.unwrap_err().is_cancelled());
    assert_eq!(fx.rows().await.len(), 30, "nothing was confirmed");

    // A new relay (same id, as a restarted pod) ships all once the lease has expired.
    let shutdown = Shutdown::new();
    let restarted = relay(fx.store.clone(), Arc::new(consumer.clone()), settings());
    let running = restarted.spawn(shutdown.clone());
    assert!(eventually(PATIENCE, || async { fx.rows().await.is_empty() }).await);
    let ids: Vec<Uuid> = written.iter().map(NewOutboxEvent::id).collect();
    assert_eq!(consumer.stored(), ids, "no loss, duplicates absorbed");
    assert!(
        consumer.deliveries().len() > 30,
        "the first batch came twice"
    );
    assert_eq!(consumer.overlaps(), 0);
    shutdown.trigger();
    running.await.unwrap();
}

pub async fn two_relays_never_ship_a_row_at_once(fx: Fixture) {
    let written = events(200);
    fx.write(&written, true).await;
    let consumer = Consumer::up().slow(Duration::from_millis(10));
    let (one, two) = (consumer.view(), consumer.view());
    let shutdown = Shutdown::new();
    let first = relay(fx.store.clone(), Arc::new(one.clone()), fast("one"));
    let second = relay(fx.another_store().await, Arc::new(two.clone()), fast("two"));
    let running = [
        first.spawn(shutdown.clone()),
        second.spawn(shutdown.clone()),
    ];

    assert!(eventually(PATIENCE, || async { fx.rows().await.is_empty() }).await);
    assert_eq!(consumer.overlaps(), 0, "a row was shipped by both at once");
    assert_eq!(consumer.deliveries().len(), 200, "each row shipped once");
    assert!(
        one.accepted() > 0 && two.accepted() > 0,
        "both relays shipped"
    );
    shutdown.trigger();
    for task in running {
        task.await.unwrap();
    }
}

pub async fn creation_order_is_kept(fx: Fixture) {
    let mut written = Vec::new();
    for _ in 0..5 {
        let batch = events(5);
        written.extend(batch.iter().map(NewOutboxEvent::id));
        fx.write(&batch, true).await;
    }
    let consumer = Consumer::up();
    let settings = RelaySettings {
        batch_size: 7,
        ..fast("relay")
    };
    let relay = relay(fx.store.clone(), Arc::new(consumer.clone()), settings);
    let notifier = relay.notifier();
    let shutdown = Shutdown::new();
    let running = relay.spawn(shutdown.clone());
    // More while it runs.
    for _ in 0..5 {
        let batch = events(5);
        written.extend(batch.iter().map(NewOutboxEvent::id));
        fx.write(&batch, true).await;
        notifier.notify();
    }
    assert!(eventually(PATIENCE, || async { consumer.stored().len() == 50 }).await);
    assert_eq!(consumer.deliveries(), written);
    shutdown.trigger();
    running.await.unwrap();
}

pub async fn a_failing_destination_backs_off(fx: Fixture) {
    let backoff = Backoff::new(Duration::from_secs(5), Duration::from_secs(20));
    fx.write(&events(4), true).await;
    let consumer = Consumer::down();
    let settings = RelaySettings {
        backoff,
        ..fast("relay")
    };
    let before = OffsetDateTime::now_utc();
    let shutdown = Shutdown::new();
    let running =
        relay(fx.store.clone(), Arc::new(consumer.clone()), settings).spawn(shutdown.clone());
    let failed_once = || async { fx.rows().await.iter().all(|r| r.attempts == 1) };
    assert!(eventually(PATIENCE, failed_once).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    shutdown.trigger();
    running.await.unwrap();
    let after = OffsetDateTime::now_utc();

    assert_eq!(consumer.calls(), 1, "no retry before the backoff");
    // SQLite keeps milliseconds.
    let slack = Duration::from_millis(2);
    for row in fx.rows().await {
        assert_eq!(row.attempts, 1);
        assert_eq!(row.claimed_by, None);
        assert!(
            row.last_error
                .as_deref()
                .unwrap()
                .contains("test destination down")
        );
        assert!(row.next_attempt_at > after, "in the future");
        assert!(row.next_attempt_at + slack >= before + backoff.base);
        assert!(row.next_attempt_at <= after + backoff.ceiling(1));
        assert!(row.next_attempt_at <= after + backoff.cap);
    }
}

pub async fn a_rejected_event_holds_back_only_itself(fx: Fixture) {
    let mut written = events(10);
    written[3] = NewOutboxEvent::new(AUDIT, POISON.to_vec());
    fx.write(&written, true).await;
    let consumer = Consumer::up();
    let shutdown = Shutdown::new();
    let running =
        relay(fx.store.clone(), Arc::new(consumer.clone()), fast("relay")).spawn(shutdown.clone());
    assert!(eventually(PATIENCE, || async { consumer.stored().len() == 9 }).await);
    let expected: Vec<Uuid> = written
        .iter()
        .filter(|e| e.payload() != POISON)
        .map(NewOutboxEvent::id)
        .collect();
    assert_eq!(consumer.stored(), expected, "the others, in order");
    // The relay confirms a batch, and records the refusal, after the sink has answered.
    assert!(
        eventually(PATIENCE, || async {
            let rows = fx.rows().await;
            rows.len() == 1 && rows[0].attempts >= 1
        })
        .await
    );
    let rows = fx.rows().await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].id, written[3].id());
    assert!(rows[0].attempts >= 1);
    assert!(rows[0].last_error.as_deref().unwrap().contains("refused"));
    shutdown.trigger();
    running.await.unwrap();
}

pub async fn metrics_follow_the_backlog(fx: Fixture) {
    let metrics = Metrics::new();
    let consumer = Consumer::down();
    let relay = OutboxRelay::new(
        fx.store.clone(),
        OutboxMetrics::register(&metrics),
        fast("relay"),
    )
    .with_sink(AUDIT, Arc::new(consumer.clone()));
    fx.write(&events(5), true).await;
    let shutdown = Shutdown::new();
    let running = relay.spawn(shutdown.clone());
    let depth = r#"cpis_outbox_depth{destination="audit"}"#;
    let age = r#"cpis_outbox_oldest_age_seconds{destination="audit"}"#;
    let delivered = r#"cpis_outbox_delivered_total{destination="audit"}"#;
    let failures = r#"cpis_outbox_failures_total{destination="audit"}"#;

    let backlog = || async {
        let text = metrics.render();
        sample(&text, depth) == Some(5.0)
            && sample(&text, age).is_some_and(|a| a > 0.0)
            && sample(&text, failures).is_some_and(|f| f >= 5.0)
    };
    assert!(eventually(PATIENCE, backlog).await, "{}", metrics.render());

    consumer.set_up(true);
    let drained = || async {
        let text = metrics.render();
        sample(&text, depth) == Some(0.0)
            && sample(&text, age) == Some(0.0)
            && sample(&text, delivered) == Some(5.0)
    };
    assert!(eventually(PATIENCE, drained).await, "{}", metrics.render());
    shutdown.trigger();
    running.await.unwrap();
}

pub async fn a_notified_relay_does_not_wait_for_its_poll(fx: Fixture) {
    let consumer = Consumer::up();
    let settings = RelaySettings {
        poll_interval: Duration::from_secs(3600),
        ..fast("relay")
    };
    let relay = relay(fx.store.clone(), Arc::new(consumer.clone()), settings);
    let notifier = relay.notifier();
    let shutdown = Shutdown::new();
    let running = relay.spawn(shutdown.clone());
    // Let it find the outbox empty and go to sleep.
    tokio::time::sleep(Duration::from_millis(200)).await;
    fx.write(&events(3), true).await;
    notifier.notify();
    assert!(
        eventually(Duration::from_secs(5), || async {
            consumer.stored().len() == 3
        })
        .await
    );
    shutdown.trigger();
    running.await.unwrap();
}
