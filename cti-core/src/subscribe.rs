//! Commit events for subscribers: after each commit (and each slide of a
//! window that changes a holder), every subscriber gets one JSON event on a
//! thread of its own, in order.
//!
//! A subscriber that falls behind by more than [`QUEUE`] events loses the
//! oldest undelivered ones rather than holding anything up: the writer and
//! the readers only ever append to a bounded queue. The next event it gets is
//! then a `{"kind":"gap","dropped":N}` event, and the subscription's counter
//! of dropped events grows (see `cti_stats_json`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle;

/// Events a subscriber may fall behind by.
pub const QUEUE: usize = 1024;

pub type Callback = Box<dyn FnMut(&str) + Send>;

#[derive(Default)]
struct State {
    events: VecDeque<Arc<str>>,
    /// Dropped since the last delivery.
    dropped: u64,
    closed: bool,
}

#[derive(Default)]
struct Queue {
    state: Mutex<State>,
    wake: Condvar,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_all();
    }

    /// The next thing to deliver, or `None` once closed.
    fn next(&self) -> Option<Arc<str>> {
        let mut s = self.lock();
        loop {
            if s.closed {
                return None;
            }
            if s.dropped > 0 {
                let gap = format!("{{\"kind\":\"gap\",\"dropped\":{}}}", s.dropped);
                s.dropped = 0;
                return Some(gap.into());
            }
            if let Some(e) = s.events.pop_front() {
                return Some(e);
            }
            s = self.wake.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// The subscribers of one store.
#[derive(Default)]
pub struct Subscribers {
    queues: Mutex<Vec<Weak<Queue>>>,
    delivered: AtomicU64,
    dropped: AtomicU64,
}

impl Subscribers {
    /// Starts a thread that calls `callback` with each event.
    pub fn add(self: &Arc<Self>, mut callback: Callback) -> std::io::Result<Subscription> {
        let queue = Arc::new(Queue::default());
        let (q, counters) = (queue.clone(), self.clone());
        let thread = std::thread::Builder::new()
            .name("cti-subscriber".into())
            .spawn(move || {
                while let Some(event) = q.next() {
                    callback(&event);
                    counters.delivered.fetch_add(1, Relaxed);
                }
            })?;
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        queues.retain(|q| q.strong_count() > 0);
        queues.push(Arc::downgrade(&queue));
        Ok(Subscription {
            queue,
            thread: Some(thread),
            pid: std::process::id(),
        })
    }

    pub fn any(&self) -> bool {
        self.queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|q| q.strong_count() > 0)
    }

    /// Queues `event` for every subscriber, dropping the oldest for any
    /// that is full. Never waits for a subscriber.
    pub fn send(&self, event: &str) {
        let event: Arc<str> = event.into();
        let queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        for q in queues.iter().filter_map(Weak::upgrade) {
            let mut s = q.lock();
            if s.events.len() >= QUEUE {
                s.events.pop_front();
                s.dropped += 1;
                self.dropped.fetch_add(1, Relaxed);
            }
            s.events.push_back(event.clone());
            drop(s);
            q.wake.notify_one();
        }
    }

    /// Ends every subscription's deliveries (the store is closing).
    pub fn close_all(&self) {
        let queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        queues
            .iter()
            .filter_map(Weak::upgrade)
            .for_each(|q| q.close());
    }

    pub fn counts(&self) -> (u64, u64) {
        (self.delivered.load(Relaxed), self.dropped.load(Relaxed))
    }
}

/// One subscriber; dropping it stops deliveries (see `close`).
pub struct Subscription {
    queue: Arc<Queue>,
    thread: Option<JoinHandle<()>>,
    /// The process that subscribed: its thread exists only there.
    pid: u32,
}

impl Subscription {
    /// Stops deliveries: once this returns no callback is running or will
    /// run, except when called from the callback itself (then the current
    /// one finishes and no other starts).
    pub fn close(&mut self) {
        if std::process::id() != self.pid {
            // A fork child: the thread is the parent's (joining it here
            // panics or hangs), so the subscription is only forgotten.
            std::mem::forget(self.thread.take());
            return;
        }
        self.queue.close();
        if let Some(t) = self.thread.take() {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn delivers_in_order_and_a_stalled_subscriber_only_loses_events() {
        let subs = Arc::new(Subscribers::default());
        let (tx, rx) = mpsc::channel();
        let mut fast = subs
            .add(Box::new(move |e: &str| drop(tx.send(e.to_string()))))
            .unwrap();
        let (gate_tx, gate_rx) = mpsc::channel::<()>();
        let (slow_tx, slow_rx) = mpsc::channel();
        let mut slow = subs
            .add(Box::new(move |e: &str| {
                drop(slow_tx.send(e.to_string()));
                let _ = gate_rx.recv_timeout(std::time::Duration::from_secs(20));
            }))
            .unwrap();
        subs.send("0");
        assert_eq!(
            slow_rx.recv().unwrap(),
            "0",
            "the slow one is now stuck in event 0"
        );
        assert_eq!(rx.recv().unwrap(), "0");
        let n = QUEUE + 100;
        for i in 1..n {
            subs.send(&format!("{i}"));
            // The fast one keeps up, event by event.
            assert_eq!(rx.recv().unwrap(), i.to_string());
        }
        gate_tx.send(()).unwrap();
        let gap = slow_rx.recv().unwrap();
        assert_eq!(
            gap,
            format!("{{\"kind\":\"gap\",\"dropped\":{}}}", n - 1 - QUEUE)
        );
        gate_tx.send(()).unwrap();
        assert_eq!(
            slow_rx.recv().unwrap(),
            (n - QUEUE).to_string(),
            "the oldest kept event"
        );
        assert_eq!(subs.counts().1, (n - 1 - QUEUE) as u64);
        drop(gate_tx);
        fast.close();
        slow.close();
    }
}
