//! Sink stage: where serialised events go. For now, JSON lines on stdout.

use std::{
    io::{BufWriter, Write},
    sync::Arc,
    thread::JoinHandle,
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// Sends serialised events (one JSON document each, no newline) to the writer.
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

/// The writer has stopped (its output was closed).
#[derive(Debug, thiserror::Error)]
#[error("the event sink has stopped")]
pub struct SinkClosed;

/// Starts a thread writing events as JSON lines to `out`, flushing whenever the
/// queue runs empty. At most `queue` events and `max_bytes` bytes wait at once.
/// The thread ends, after flushing, when every sender is dropped.
///
/// A plain thread with blocking writes, not an async task: tokio's stdout hands
/// every write to its blocking pool, and that hop, once per flush, capped the
/// event rate well below what the rest of the pipeline sustains.
pub fn json_lines<W>(
    out: W,
    queue: usize,
    max_bytes: usize,
) -> std::io::Result<(EventSender, JoinHandle<std::io::Result<()>>)>
where
    W: Write + Send + 'static,
{
    let max_bytes = max_bytes.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
    let (tx, mut rx) = mpsc::channel::<(Vec<u8>, OwnedSemaphorePermit)>(queue);
    let writer = std::thread::Builder::new()
        .name("telltale-sink".into())
        .spawn(move || {
            let mut w = BufWriter::with_capacity(256 * 1024, out);
            while let Some((line, permit)) = rx.blocking_recv() {
                w.write_all(&line)?;
                w.write_all(b"\n")?;
                drop(permit);
                if rx.is_empty() {
                    w.flush()?;
                }
            }
            w.flush()
        })?;
    let sender = EventSender {
        tx,
        bytes: Arc::new(Semaphore::new(max_bytes)),
        max_bytes,
    };
    Ok((sender, writer))
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[tokio::test]
    async fn writes_one_line_per_event_and_flushes_at_close() {
        let (mut reader, writer) = std::os::unix::net::UnixStream::pair().expect("pair");
        let (tx, task) = json_lines(writer, 4, 1 << 20).expect("writer");
        tx.send(b"{\"a\":1}".to_vec()).await.expect("send");
        tx.send(b"{\"b\":2}".to_vec()).await.expect("send");
        drop(tx);
        task.join().expect("join").expect("write");
        let mut got = String::new();
        reader.read_to_string(&mut got).expect("read");
        assert_eq!(got, "{\"a\":1}\n{\"b\":2}\n");
    }

    #[tokio::test]
    async fn the_byte_budget_holds_senders_back_until_the_writer_catches_up() {
        // A reader that reads nothing yet: the writer blocks on the first event
        // (larger than its buffer, so written through), the next two queue.
        const EVENT: usize = 300_000;
        let (mut reader, writer) = std::os::unix::net::UnixStream::pair().expect("pair");
        let (tx, task) = json_lines(writer, 1000, 1_000_000).expect("writer");
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
        let drain = std::thread::spawn(move || {
            let mut all = Vec::new();
            reader.read_to_end(&mut all).expect("read");
            all
        });
        tx.send(vec![b'z'; EVENT]).await.expect("sent once drained");
        drop(tx);
        task.join().expect("join").expect("write");
        let all = drain.join().expect("reader");
        assert_eq!(all.len(), 4 * (EVENT + 1));
    }
}
