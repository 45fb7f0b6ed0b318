//! Sink stage: where serialised events go. For now, JSON lines on stdout.

use std::sync::Arc;

use tokio::{
    io::{AsyncWrite, AsyncWriteExt, BufWriter},
    sync::{OwnedSemaphorePermit, Semaphore, mpsc},
    task::JoinHandle,
};

/// Sends serialised events (one JSON document each, no newline) to a writer task.
///
/// The queue is bounded twice: by event count and by bytes, so that a burst of
/// large events (1 MiB request bodies) cannot grow memory past the byte budget;
/// a sender waits while either bound is reached (backpressure, which the kernel
/// ring buffer then absorbs and, past its size, counts as loss).
#[derive(Clone)]
pub struct EventSender {
    tx: mpsc::Sender<(Vec<u8>, OwnedSemaphorePermit)>,
    bytes: Arc<Semaphore>,
    max_bytes: usize,
}

impl EventSender {
    /// Queues one event; waits while the queue is full.
    pub async fn send(&self, line: Vec<u8>) -> Result<(), SinkClosed> {
        // An event larger than the whole budget takes all of it.
        let cost = line.len().clamp(1, self.max_bytes);
        let permit = Arc::clone(&self.bytes)
            .acquire_many_owned(u32::try_from(cost).unwrap_or(u32::MAX))
            .await
            .map_err(|_| SinkClosed)?;
        self.tx.send((line, permit)).await.map_err(|_| SinkClosed)
    }
}

/// The writer task has stopped (its output was closed).
#[derive(Debug, thiserror::Error)]
#[error("the event sink has stopped")]
pub struct SinkClosed;

/// Starts a task writing events as JSON lines to `out`, flushing whenever the
/// queue runs empty. At most `queue` events and `max_bytes` bytes wait at once.
/// The task ends, after flushing, when every sender is dropped.
pub fn json_lines<W>(
    out: W,
    queue: usize,
    max_bytes: usize,
) -> (EventSender, JoinHandle<std::io::Result<()>>)
where
    W: AsyncWrite + Unpin + Send + 'static,
{
    let max_bytes = max_bytes.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
    let (tx, mut rx) = mpsc::channel::<(Vec<u8>, OwnedSemaphorePermit)>(queue);
    let task = tokio::spawn(async move {
        let mut w = BufWriter::with_capacity(256 * 1024, out);
        while let Some((mut line, permit)) = rx.recv().await {
            line.push(b'\n');
            w.write_all(&line).await?;
            drop(permit);
            if rx.is_empty() {
                w.flush().await?;
            }
        }
        w.flush().await
    });
    let sender = EventSender {
        tx,
        bytes: Arc::new(Semaphore::new(max_bytes)),
        max_bytes,
    };
    (sender, task)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_one_line_per_event_and_flushes_at_close() {
        let (client, mut server) = tokio::io::duplex(1 << 16);
        let (tx, task) = json_lines(client, 4, 1 << 20);
        tx.send(b"{\"a\":1}".to_vec()).await.expect("send");
        tx.send(b"{\"b\":2}".to_vec()).await.expect("send");
        drop(tx);
        task.await.expect("join").expect("write");
        let mut got = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut server, &mut got)
            .await
            .expect("read");
        assert_eq!(got, "{\"a\":1}\n{\"b\":2}\n");
    }

    #[tokio::test]
    async fn the_byte_budget_holds_senders_back_until_the_writer_catches_up() {
        // A reader that reads nothing yet: the writer blocks on the first event
        // (larger than its buffer, so written through), the next two queue.
        const EVENT: usize = 300_000;
        let (client, mut server) = tokio::io::duplex(16);
        let (tx, task) = json_lines(client, 1000, 1_000_000);
        for _ in 0..3 {
            tx.send(vec![b'x'; EVENT]).await.expect("fits the budget");
        }
        // 900 kB are in flight; a fourth event must wait.
        let blocked = tokio::time::timeout(
            std::time::Duration::from_millis(200),
            tx.send(vec![b'y'; EVENT]),
        )
        .await;
        assert!(blocked.is_err(), "the fourth event waits for budget");
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut server, &mut all)
                .await
                .expect("read");
            all
        });
        tx.send(vec![b'z'; EVENT]).await.expect("sent once drained");
        drop(tx);
        task.await.expect("join").expect("write");
        let all = reader.await.expect("reader");
        assert_eq!(all.len(), 4 * (EVENT + 1));
    }
}
