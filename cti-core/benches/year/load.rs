//! The claimers: threads that make the traffic's claims through the store's
//! real entry points, the blocking `claim` (one claim in flight per thread,
//! as C and Python callers) and the callback `claim_with` (many in flight
//! from one thread, as the async frontends), so that the writer's group
//! commit batches them.
//!
//! Claims are handed out in index order by a [`Gate`] that also moves the
//! manual clock to each claim's time, and stops at a limit the driver raises
//! (at a week's end, or gradually while it paces the first hours).

use crate::traffic::Traffic;
use cti_core::{Error, ManualClock, Store};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a claimer backs off when the store says it is overloaded.
const BACKOFF: Duration = Duration::from_millis(20);

#[derive(Default)]
struct Span {
    next: u64,
    limit: u64,
    stopped: bool,
}

/// Hands out claim indices in order, up to a limit, and keeps the clock at
/// the time of the newest claim handed out.
pub struct Gate {
    span: Mutex<Span>,
    moved: Condvar,
    /// Claims acknowledged (committed).
    pub done: AtomicU64,
    /// Claims the store refused as overloaded (then made again).
    pub retried: AtomicU64,
    /// Claims that failed for any other reason (there should be none).
    pub failed: AtomicU64,
    traffic: Arc<Traffic>,
    clock: Arc<ManualClock>,
}

impl Gate {
    pub fn new(traffic: Arc<Traffic>, clock: Arc<ManualClock>) -> Gate {
        Gate {
            span: Mutex::default(),
            moved: Condvar::new(),
            done: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            traffic,
            clock,
        }
    }

    fn span(&self) -> std::sync::MutexGuard<'_, Span> {
        self.span.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next claim's index, waiting while the limit is reached; `None`
    /// once stopped.
    fn take(&self) -> Option<u64> {
        let mut span = self.span();
        while span.next >= span.limit && !span.stopped {
            span = self.moved.wait(span).unwrap_or_else(|p| p.into_inner());
        }
        self.take_locked(&mut span)
    }

    /// The next claim's index if one is free now.
    fn try_take(&self) -> Option<u64> {
        self.take_locked(&mut self.span())
    }

    fn take_locked(&self, span: &mut Span) -> Option<u64> {
        if span.stopped || span.next >= span.limit {
            return None;
        }
        let i = span.next;
        span.next += 1;
        // Under the lock, so the clock only moves forward.
        self.clock.set(self.traffic.time_of(i));
        Some(i)
    }

    pub fn raise(&self, limit: u64) {
        let mut span = self.span();
        span.limit = span.limit.max(limit.min(self.traffic.total()));
        self.moved.notify_all();
    }

    pub fn stop(&self) {
        self.span().stopped = true;
        self.moved.notify_all();
    }

    pub fn stopped(&self) -> bool {
        self.span().stopped
    }

    /// Waits until every claim up to `limit` is acknowledged.
    pub fn drain(&self, limit: u64) {
        while self.done.load(Ordering::Acquire) < limit {
            assert_eq!(
                self.failed.load(Ordering::Relaxed),
                0,
                "claims failed; see above"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn refused(&self, e: &Error) -> bool {
        if matches!(e, Error::Unavailable(_)) {
            self.retried.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        eprintln!("year: a claim failed: {e}");
        self.failed.fetch_add(1, Ordering::Relaxed);
        false
    }
}

/// The claimer threads.
pub struct Claimers {
    threads: Vec<JoinHandle<()>>,
}

impl Claimers {
    /// `blocking` threads with one claim in flight each, and one thread
    /// keeping up to `in_flight` callback claims in flight.
    pub fn start(store: &Arc<Store>, gate: &Arc<Gate>, blocking: usize, in_flight: usize) -> Self {
        let mut threads: Vec<_> = (0..blocking)
            .map(|_| {
                let (store, gate) = (store.clone(), gate.clone());
                std::thread::spawn(move || claim_blocking(&store, &gate))
            })
            .collect();
        if in_flight > 0 {
            let (store, gate) = (store.clone(), gate.clone());
            threads.push(std::thread::spawn(move || {
                claim_async(&store, &gate, in_flight)
            }));
        }
        Claimers { threads }
    }

    pub fn join(self) {
        for t in self.threads {
            t.join().expect("a claimer panicked");
        }
    }
}

fn claim_blocking(store: &Store, gate: &Gate) {
    while let Some(i) = gate.take() {
        let c = gate.traffic.claim(i);
        let (ip, nick) = (c.ip.to_string(), gate.traffic.name(c.player));
        loop {
            match store.claim(&ip, nick) {
                Ok(_) => break,
                Err(e) if gate.refused(&e) => std::thread::sleep(BACKOFF),
                Err(_) => return,
            }
        }
        gate.done.fetch_add(1, Ordering::AcqRel);
    }
}

/// Keeps up to `in_flight` claims queued with `claim_with`; a claim the
/// store refused as overloaded is made again.
fn claim_async(store: &Store, gate: &Arc<Gate>, in_flight: usize) {
    let (tokens, returned) = mpsc::sync_channel::<()>(in_flight);
    (0..in_flight).for_each(|_| tokens.send(()).expect("room for every token"));
    let again = Arc::new(Mutex::new(Vec::<u64>::new()));
    while returned.recv().is_ok() {
        let retry = again.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let Some(i) = retry.or_else(|| gate.try_take()) else {
            let _ = tokens.send(());
            if gate.stopped() {
                break;
            }
            // Nothing to claim until the driver raises the limit.
            std::thread::sleep(Duration::from_micros(500));
            continue;
        };
        let c = gate.traffic.claim(i);
        let (token, gate2, again2) = (tokens.clone(), gate.clone(), again.clone());
        let done = Box::new(move |r: cti_core::Result<cti_core::Claimed>| {
            match r {
                Ok(_) => {
                    gate2.done.fetch_add(1, Ordering::AcqRel);
                }
                Err(e) if gate2.refused(&e) => {
                    again2.lock().unwrap_or_else(|p| p.into_inner()).push(i)
                }
                Err(_) => {}
            }
            let _ = token.send(());
        });
        if let Err(e) = store.claim_with(&c.ip.to_string(), gate.traffic.name(c.player), done) {
            // Refused before queueing: the callback will not run.
            if gate.refused(&e) {
                again.lock().unwrap_or_else(|p| p.into_inner()).push(i);
                std::thread::sleep(BACKOFF);
            }
            let _ = tokens.send(());
        }
    }
}
