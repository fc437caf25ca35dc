//! HTTP/2 streams served inside their connection's task. hyper hands every
//! new stream to an executor; with tokio's, each request was a task of its
//! own, spawned, scheduled, woken and freed apart from the connection task
//! that writes its answer, and the connection was woken (and wrote) once
//! per finished stream. Here the executor only queues the stream; the
//! connection's own task polls its streams right after the connection, and
//! the connection again to send what they answered, so the answers to the
//! requests of one read leave together. (profile and figures:
//! docs/performance.md)

use futures_util::stream::{FuturesUnordered, StreamExt};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Rounds of connection-then-streams in one poll before yielding to the
/// runtime's other tasks.
const ROUNDS: usize = 16;

/// hyper's executor for one connection: the streams it starts wait here
/// until the connection's task takes them.
#[derive(Clone, Default)]
pub struct Streams(Arc<Mutex<Vec<Task>>>);

impl<F> hyper::rt::Executor<F> for Streams
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, stream: F) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Box::pin(stream));
    }
}

/// The streams of one connection, polled by the connection's task.
pub struct Driver {
    started: Streams,
    /// `None` while no stream runs: an idle connection keeps no set.
    running: Option<FuturesUnordered<Task>>,
}

impl Driver {
    pub fn new(started: Streams) -> Driver {
        Driver {
            started,
            running: None,
        }
    }

    /// Polls the connection (`conn`), then its streams, and again while
    /// streams finish (their answers are then written at once). Streams
    /// still running when the connection ends are dropped with it (hyper
    /// ends a connection only when its streams are done, or it failed).
    pub fn poll<R>(
        &mut self,
        cx: &mut Context<'_>,
        mut conn: impl FnMut(&mut Context<'_>) -> Poll<R>,
    ) -> Poll<R> {
        for _ in 0..ROUNDS {
            if let Poll::Ready(done) = conn(cx) {
                return Poll::Ready(done);
            }
            let started =
                std::mem::take(&mut *self.started.0.lock().unwrap_or_else(|p| p.into_inner()));
            if !started.is_empty() {
                let running = self.running.get_or_insert_with(FuturesUnordered::new);
                running.extend(started);
            }
            let Some(running) = self.running.as_mut() else {
                return Poll::Pending;
            };
            let mut finished = false;
            while let Poll::Ready(Some(())) = running.poll_next_unpin(cx) {
                finished = true;
            }
            if running.is_empty() {
                self.running = None;
            }
            if !finished {
                return Poll::Pending;
            }
        }
        // Busy: let the runtime's other tasks run, then go on.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Executor;
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    #[tokio::test]
    async fn streams_run_in_the_polling_task_and_the_connection_goes_on_after_them() {
        let streams = Streams::default();
        let mut driver = Driver::new(streams.clone());
        let done = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut rx = Some(rx);
        let mut polls = 0;
        // A "connection" that starts two streams, one of them waiting, and
        // ends once both have run.
        let conn = |_: &mut Context<'_>| {
            polls += 1;
            if polls == 1 {
                let d = done.clone();
                streams.execute(async move {
                    d.fetch_add(1, Relaxed);
                });
                let (d, rx) = (done.clone(), rx.take().unwrap());
                streams.execute(async move {
                    let _ = rx.await;
                    d.fetch_add(1, Relaxed);
                });
            }
            if done.load(Relaxed) == 2 {
                Poll::Ready(polls)
            } else {
                Poll::Pending
            }
        };
        let mut conn = conn;
        let waiter = std::future::poll_fn(|cx| driver.poll(cx, &mut conn));
        let sender = async {
            tokio::task::yield_now().await;
            tx.send(()).unwrap();
        };
        let (polled, ()) = tokio::join!(waiter, sender);
        assert_eq!(
            done.load(Relaxed),
            2,
            "both streams ran, without tokio::spawn"
        );
        assert!(
            polled >= 3,
            "the connection was polled again after each stream finished"
        );
    }
}
