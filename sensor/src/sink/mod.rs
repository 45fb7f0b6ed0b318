//! Sink stage: the queue from the pipeline to the dispatcher that offers every
//! event to the configured sinks (`telltale::deliver`).

use std::{sync::Arc, thread::JoinHandle, time::Duration};

use telltale::deliver::{
    sinks::{Outgoing, Sinks},
    worker::SinkStats,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// Sends events to the dispatcher, which hands them to the configured sinks.
///
/// The queue is bounded twice: by event count and by bytes, so that a burst of
/// large events (1 MiB request bodies) cannot grow memory past the byte budget;
/// a sender waits while either bound is reached (backpressure, which the kernel
/// ring buffer then absorbs and, past its size, counts as loss). Sinks with a
/// spool never make the dispatcher wait; sinks without one (stdout) do.
#[derive(Clone)]
pub struct EventSender {
    tx: mpsc::Sender<(Outgoing, OwnedSemaphorePermit)>,
    bytes: Arc<Semaphore>,
    max_bytes: usize,
}

impl EventSender {
    /// Queues one event; waits while the queue is full.
    pub async fn send(&self, ev: Outgoing) -> Result<(), SinkClosed> {
        // An event larger than the whole budget takes all of it.
        let cost = ev.json.len().clamp(1, self.max_bytes);
        let permit = Arc::clone(&self.bytes)
            .acquire_many_owned(u32::try_from(cost).unwrap_or(u32::MAX))
            .await
            .map_err(|_| SinkClosed)?;
        self.tx.send((ev, permit)).await.map_err(|_| SinkClosed)
    }
}

/// The dispatcher has stopped.
#[derive(Debug, thiserror::Error)]
#[error("the event sink has stopped")]
pub struct SinkClosed;

/// How long sinks get at shutdown to deliver what they hold (the rest stays in
/// their spools for the next start).
pub const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Starts the dispatcher thread: it takes events from the returned sender and
/// offers each to every sink. At most `queue` events and `max_bytes` bytes wait
/// at once. When every sender is dropped, the sinks are closed and the thread
/// returns their final counters.
///
/// A plain thread, not an async task: the sinks' queues and stdout are blocking,
/// and a hop to tokio's blocking pool per event capped the event rate.
pub fn dispatch(
    sinks: Arc<std::sync::RwLock<Arc<Sinks>>>,
    queue: usize,
    max_bytes: usize,
) -> std::io::Result<(EventSender, JoinHandle<Vec<SinkStats>>)> {
    let max_bytes = max_bytes.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
    let (tx, mut rx) = mpsc::channel::<(Outgoing, OwnedSemaphorePermit)>(queue);
    let thread = std::thread::Builder::new()
        .name("telltale-dispatch".into())
        .spawn(move || {
            let current = || match sinks.read() {
                Ok(g) => Arc::clone(&g),
                Err(p) => Arc::clone(&p.into_inner()),
            };
            while let Some((ev, permit)) = rx.blocking_recv() {
                current().send(&ev);
                drop(permit);
            }
            let last = current();
            drop(sinks);
            match Arc::try_unwrap(last) {
                Ok(s) => s.close(CLOSE_GRACE),
                Err(shared) => shared.stats(),
            }
        })?;
    let sender = EventSender {
        tx,
        bytes: Arc::new(Semaphore::new(max_bytes)),
        max_bytes,
    };
    Ok((sender, thread))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(n: usize) -> Outgoing {
        Outgoing {
            event_type: "alert".into(),
            id: format!("{n}").into(),
            time: "t".into(),
            level: telltale::deliver::Level::High,
            host: "h".into(),
            json: vec![b'x'; n],
        }
    }

    #[tokio::test]
    async fn the_byte_budget_holds_senders_back_until_the_dispatcher_catches_up() {
        // No sinks: the dispatcher drops events at once, so the budget frees.
        let sinks = Arc::new(std::sync::RwLock::new(Arc::new(
            Sinks::start(&[], None).expect("no sinks"),
        )));
        let (tx, thread) = dispatch(sinks, 1000, 1_000_000).expect("dispatcher");
        for _ in 0..10 {
            tx.send(ev(300_000))
                .await
                .expect("budget frees as events go");
        }
        drop(tx);
        assert!(thread.join().expect("join").is_empty());
    }
}
