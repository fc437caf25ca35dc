//! Open client connections, counted by a guard that each accepted
//! connection holds for its lifetime (whichever accept loop took it).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

#[derive(Default)]
pub struct Connections(Arc<AtomicU64>);

impl Connections {
    /// Counts one connection until the guard is dropped.
    pub fn open(&self) -> ConnectionGuard {
        self.0.fetch_add(1, Relaxed);
        ConnectionGuard(self.0.clone())
    }

    pub fn count(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

pub struct ConnectionGuard(Arc<AtomicU64>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_count() {
        let c = Connections::default();
        let a = c.open();
        let b = c.open();
        assert_eq!(c.count(), 2);
        drop(a);
        assert_eq!(c.count(), 1);
        drop(b);
        assert_eq!(c.count(), 0);
    }
}
