//! `tracing` conventions: span and field names the worker uses, and the two spans themselves.
//!
//! One span per worker and one per shard pipeline (a child of the worker's). Lease gained, lost,
//! stolen and ended, and shard end, are logged at `INFO` inside them; each batch at `DEBUG`.
//! The library never installs a subscriber.

use tracing::Span;

/// Name of the span around everything one worker does.
pub const WORKER_SPAN: &str = "shardwise.worker";
/// Name of the span around one shard pipeline.
pub const SHARD_SPAN: &str = "shardwise.shard";
/// Field: the stream name.
pub const STREAM: &str = crate::labels::STREAM;
/// Field: the shard id.
pub const SHARD: &str = crate::labels::SHARD;
/// Field: the worker id.
pub const WORKER: &str = crate::labels::WORKER;
/// Field: the lease counter the pipeline holds its grant at (the fencing token).
pub const LEASE_COUNTER: &str = "lease_counter";

/// The span of worker `worker`, at `INFO`.
///
/// ```
/// let span = shardwise_metrics::trace::worker_span("worker-1");
/// let _entered = span.enter();
/// ```
pub fn worker_span(worker: &str) -> Span {
    tracing::info_span!("shardwise.worker", worker = worker)
}

/// The span of one shard pipeline, at `INFO`. Enter it inside the worker's span so events carry
/// both. Record a new counter with `span.record(LEASE_COUNTER, counter)` after a renewal when
/// useful.
pub fn shard_span(stream: &str, shard: &str, worker: &str, lease_counter: u64) -> Span {
    tracing::info_span!(
        "shardwise.shard",
        stream = stream,
        shard = shard,
        worker = worker,
        lease_counter = lease_counter
    )
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    use super::*;

    /// A span's name and its field names.
    type Seen = (String, Vec<String>);

    /// Remembers the name and field names of every span created.
    #[derive(Default, Clone)]
    struct SpanNames(Arc<Mutex<Vec<Seen>>>);

    impl Subscriber for SpanNames {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, span: &Attributes<'_>) -> Id {
            let meta = span.metadata();
            let fields = meta.fields().iter().map(|f| f.name().to_owned()).collect();
            let mut seen = self.0.lock().unwrap();
            seen.push((meta.name().to_owned(), fields));
            Id::from_u64(seen.len() as u64)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, _: &Event<'_>) {}
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    #[test]
    fn spans_carry_the_documented_names() {
        let seen = SpanNames::default();
        tracing::subscriber::with_default(seen.clone(), || {
            let _w = worker_span("w");
            let _s = shard_span("s", "h", "w", 7);
        });
        let seen = seen.0.lock().unwrap().clone();
        let want = vec![
            (WORKER_SPAN.to_owned(), vec![WORKER.to_owned()]),
            (
                SHARD_SPAN.to_owned(),
                [STREAM, SHARD, WORKER, LEASE_COUNTER]
                    .map(str::to_owned)
                    .to_vec(),
            ),
        ];
        assert_eq!(seen, want);
    }
}
