//! Connection limits: a cap on open connections and one per client address,
//! and the timeouts every stage of a connection gets.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// For the PROXY header from a balancer.
    pub proxy_header: Duration,
    /// For the TLS handshake (and for the first bytes of a connection).
    pub handshake: Duration,
    /// For a request's headers, and between requests on a kept-alive connection.
    pub request: Duration,
}

pub struct Limits {
    open: Arc<Semaphore>,
    per_source: usize,
    sources: Mutex<HashMap<IpAddr, usize>>,
}

/// Held while a connection is open.
pub struct Slot {
    _open: OwnedSemaphorePermit,
}

/// Held while a client address has this connection open.
pub struct SourceSlot<'a> {
    limits: &'a Limits,
    ip: IpAddr,
}

impl Limits {
    pub fn new(max_open: usize, per_source: usize) -> Limits {
        Limits {
            open: Arc::new(Semaphore::new(max_open)),
            per_source,
            sources: Mutex::new(HashMap::new()),
        }
    }

    /// A slot for a new connection, or `None` at the cap.
    pub fn open(&self) -> Option<Slot> {
        self.open
            .clone()
            .try_acquire_owned()
            .ok()
            .map(|p| Slot { _open: p })
    }

    /// A slot for one more connection from `ip`, or `None` at its cap.
    pub fn source(&self, ip: IpAddr) -> Option<SourceSlot<'_>> {
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        let n = sources.entry(ip).or_default();
        if *n >= self.per_source {
            return None;
        }
        *n += 1;
        Some(SourceSlot { limits: self, ip })
    }

    pub fn open_connections(&self, max_open: usize) -> usize {
        max_open - self.open.available_permits()
    }
}

impl Drop for SourceSlot<'_> {
    fn drop(&mut self) {
        let mut sources = self
            .limits
            .sources
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = sources.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                sources.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_total_and_per_source() {
        let l = Limits::new(3, 2);
        let ip: IpAddr = "1.2.3.4".parse().unwrap();
        let a = l.source(ip).unwrap();
        let _b = l.source(ip).unwrap();
        assert!(l.source(ip).is_none());
        assert!(l.source("5.6.7.8".parse().unwrap()).is_some());
        drop(a);
        assert!(l.source(ip).is_some());
        let slots: Vec<_> = (0..3).map(|_| l.open().unwrap()).collect();
        assert!(l.open().is_none());
        assert_eq!(l.open_connections(3), 3);
        drop(slots);
        assert!(l.open().is_some());
    }
}
