//! Sink stage: where serialised events go. For now, JSON lines on stdout.

use tokio::{
    io::{AsyncWrite, AsyncWriteExt, BufWriter},
    sync::mpsc,
    task::JoinHandle,
};

/// Sends serialised events (one JSON document each, no newline) to a writer task.
#[derive(Clone)]
pub struct EventSender {
    tx: mpsc::Sender<Vec<u8>>,
}

impl EventSender {
    /// Queues one event; waits while the queue is full (backpressure).
    pub async fn send(&self, line: Vec<u8>) -> Result<(), SinkClosed> {
        self.tx.send(line).await.map_err(|_| SinkClosed)
    }
}

/// The writer task has stopped (its output was closed).
#[derive(Debug, thiserror::Error)]
#[error("the event sink has stopped")]
pub struct SinkClosed;

/// Starts a task writing events as JSON lines to `out`, flushing whenever the
/// queue runs empty. The task ends, after flushing, when every sender is dropped.
pub fn json_lines<W>(out: W, queue: usize) -> (EventSender, JoinHandle<std::io::Result<()>>)
where
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(queue);
    let task = tokio::spawn(async move {
        let mut w = BufWriter::with_capacity(256 * 1024, out);
        while let Some(mut line) = rx.recv().await {
            line.push(b'\n');
            w.write_all(&line).await?;
            if rx.is_empty() {
                w.flush().await?;
            }
        }
        w.flush().await
    });
    (EventSender { tx }, task)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_one_line_per_event_and_flushes_at_close() {
        let (client, mut server) = tokio::io::duplex(1 << 16);
        let (tx, task) = json_lines(client, 4);
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
}
