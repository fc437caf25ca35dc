//! Live updates as server-sent events. Each listener has a small bounded
//! queue; a listener too slow to keep up is dropped (its stream ends and the
//! page falls back to polling) rather than buffered without limit.

use bytes::Bytes;
use hyper::body::{Body, Frame};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// Events a listener may fall behind by before it is dropped.
const QUEUE: usize = 256;
/// How often idle listeners get a comment line.
pub const PING_EVERY: std::time::Duration = std::time::Duration::from_secs(15);
/// Most listeners at once; more are refused with 503.
pub const MAX_LISTENERS: usize = 10_000;

#[derive(Default)]
pub struct Broadcaster {
    listeners: Mutex<Vec<mpsc::Sender<Bytes>>>,
    closed: std::sync::atomic::AtomicBool,
}

impl Broadcaster {
    /// A new listener's body, or `None` when full or shut down.
    pub fn subscribe(&self) -> Option<EventBody> {
        let mut listeners = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        if self.closed.load(std::sync::atomic::Ordering::Acquire)
            || listeners.len() >= MAX_LISTENERS
        {
            return None;
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        // A comment first, so clients see the stream open at once.
        let _ = tx.try_send(Bytes::from_static(b": connected\nretry: 2000\n\n"));
        listeners.push(tx);
        Some(EventBody { rx })
    }

    /// Sends `event` with `data` (one line of JSON) to every listener.
    pub fn send(&self, event: &str, data: &str) {
        self.send_raw(Bytes::from(format!("event: {event}\ndata: {data}\n\n")));
    }

    /// Passes on an event of the core's subscription (`commit`, `slide` or
    /// `gap`, see `cti_subscribe`) under its kind's name.
    pub fn send_core_event(&self, json: &str) {
        let kind = serde_json::from_str::<serde_json::Value>(json)
            .ok()
            .and_then(|v| v["kind"].as_str().map(str::to_string));
        if let Some(kind) = kind {
            self.send(&kind, json);
        }
    }

    /// Keeps idle connections (and proxies) from timing out.
    pub fn ping(&self) {
        self.send_raw(Bytes::from_static(b": ping\n\n"));
    }

    fn send_raw(&self, frame: Bytes) {
        let mut listeners = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        listeners.retain(|l| l.try_send(frame.clone()).is_ok());
    }

    pub fn listeners(&self) -> usize {
        self.listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Ends every stream (graceful shutdown waits for them otherwise).
    pub fn close(&self) {
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
        self.listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

/// The response body of one listener.
pub struct EventBody {
    rx: mpsc::Receiver<Bytes>,
}

impl Body for EventBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn delivers_and_drops_slow_listeners() {
        let b = Broadcaster::default();
        let mut fast = b.subscribe().unwrap();
        let slow = b.subscribe().unwrap();
        b.send("claim", "{}");
        let first = fast.frame().await.unwrap().unwrap().into_data().unwrap();
        assert!(first.starts_with(b": connected"));
        let second = fast.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&second[..], b"event: claim\ndata: {}\n\n");
        for _ in 0..QUEUE + 1 {
            b.send("claim", "{}");
            while let Some(Ok(_)) = futures_poll_once(&mut fast).await {}
        }
        assert_eq!(b.listeners(), 1, "the slow listener was dropped");
        drop(slow);
        b.close();
        assert!(b.subscribe().is_none());
    }

    /// Reads what is ready without waiting.
    async fn futures_poll_once(body: &mut EventBody) -> Option<Result<Frame<Bytes>, Infallible>> {
        std::future::poll_fn(|cx| match Pin::new(&mut *body).poll_frame(cx) {
            Poll::Ready(f) => Poll::Ready(f),
            Poll::Pending => Poll::Ready(None),
        })
        .await
    }
}
