//! Live updates as server-sent events. Each listener has a small bounded
//! queue; a listener too slow to keep up is dropped (its stream ends and the
//! page falls back to polling) rather than buffered without limit.
//!
//! Listeners are capped in total and per network (/24, /64), and a listener
//! gives its place back the moment its body is dropped, that is when its
//! connection closes, not at the next event.

use crate::caps::{Network, PerKey, Place};
use bytes::Bytes;
use hyper::body::{Body, Frame};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// Events a listener may fall behind by before it is dropped.
const QUEUE: usize = 256;
/// How often idle listeners get a comment line.
pub const PING_EVERY: std::time::Duration = std::time::Duration::from_secs(15);

/// How many event streams may be open.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    pub total: usize,
    /// Per /24 (IPv4) or /64 (IPv6) of the client address.
    pub per_network: usize,
}

impl Caps {
    pub const DEFAULT_TOTAL: usize = 10_000;
    pub const DEFAULT_PER_NETWORK: usize = 64;
}

impl Default for Caps {
    fn default() -> Caps {
        Caps {
            total: Caps::DEFAULT_TOTAL,
            per_network: Caps::DEFAULT_PER_NETWORK,
        }
    }
}

pub struct Broadcaster {
    shared: Arc<Shared>,
}

struct Shared {
    listeners: Mutex<HashMap<u64, mpsc::Sender<Bytes>>>,
    next_id: AtomicU64,
    closed: AtomicBool,
    total: usize,
    networks: PerKey<Network>,
}

impl Default for Broadcaster {
    fn default() -> Broadcaster {
        Broadcaster::new(Caps::default())
    }
}

impl Broadcaster {
    pub fn new(caps: Caps) -> Broadcaster {
        Broadcaster {
            shared: Arc::new(Shared {
                listeners: Mutex::default(),
                next_id: AtomicU64::new(0),
                closed: AtomicBool::new(false),
                total: caps.total,
                networks: PerKey::new(caps.per_network),
            }),
        }
    }

    /// A new listener's body for a client at `source` (`None`: a connection
    /// without a client address), or `None` when a cap is reached or the
    /// broadcaster is shut down.
    pub fn subscribe(&self, source: Option<IpAddr>) -> Option<EventBody> {
        let place = match source {
            Some(ip) => Some(self.shared.networks.take(Network::of(ip))?),
            None => None,
        };
        let mut listeners = self.shared.lock();
        if self.shared.closed.load(Ordering::Acquire) || listeners.len() >= self.shared.total {
            return None;
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        // A comment first, so clients see the stream open at once.
        let _ = tx.try_send(Bytes::from_static(b": connected\nretry: 2000\n\n"));
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        listeners.insert(id, tx);
        Some(EventBody {
            rx,
            id,
            shared: self.shared.clone(),
            _place: place,
        })
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
        // A full queue drops its listener: its stream ends after what it has.
        self.shared
            .lock()
            .retain(|_, l| l.try_send(frame.clone()).is_ok());
    }

    pub fn listeners(&self) -> usize {
        self.shared.lock().len()
    }

    /// Ends the open streams but takes new ones (a hand-over to another
    /// process: their clients reconnect, to it).
    pub fn end_streams(&self) {
        self.shared.lock().clear();
    }

    /// Ends every stream (graceful shutdown waits for them otherwise).
    pub fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.lock().clear();
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, mpsc::Sender<Bytes>>> {
        self.listeners.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The response body of one listener; dropping it frees its place.
pub struct EventBody {
    rx: mpsc::Receiver<Bytes>,
    id: u64,
    shared: Arc<Shared>,
    _place: Option<Place<Network>>,
}

impl Drop for EventBody {
    fn drop(&mut self) {
        self.shared.lock().remove(&self.id);
    }
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

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[tokio::test]
    async fn delivers_and_drops_slow_listeners() {
        let b = Broadcaster::default();
        let mut fast = b.subscribe(ip("192.0.2.1")).unwrap();
        let slow = b.subscribe(ip("192.0.2.2")).unwrap();
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
        assert!(b.subscribe(None).is_none());
    }

    #[test]
    fn caps_per_network_and_in_total_and_frees_on_drop() {
        let b = Broadcaster::new(Caps {
            total: 4,
            per_network: 2,
        });
        let one = b.subscribe(ip("198.51.100.1")).unwrap();
        let _two = b.subscribe(ip("::ffff:198.51.100.2")).unwrap();
        assert!(
            b.subscribe(ip("198.51.100.3")).is_none(),
            "a third stream from the /24"
        );
        let _v6 = b.subscribe(ip("2001:db8::1")).unwrap();
        assert!(
            b.subscribe(ip("2001:db8::ffff:1")).is_some(),
            "dropped at once"
        );
        let _v6b = b.subscribe(ip("2001:db8::2")).unwrap();
        assert!(b.subscribe(ip("203.0.113.1")).is_none(), "the total cap");
        assert_eq!(b.listeners(), 4);
        // Dropping the body (its connection closed) frees the place at once,
        // with no event or ping sent in between.
        drop(one);
        assert_eq!(b.listeners(), 3);
        assert!(b.subscribe(ip("198.51.100.4")).is_some());
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
