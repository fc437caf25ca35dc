//! Fork safety for SQLite.
//!
//! The header lets a forked child open stores of its own. `fork` copies only
//! the calling thread, and every lock another thread held at that instant
//! stays locked in the child for good. SQLite takes process-wide mutexes on
//! nearly every call (its allocator's, the unix VFS's), so a child forked
//! while this process's writer, reader or checkpointer thread was inside
//! SQLite hung on its first SQLite call (5 of 100 forks under steady claims).
//!
//! So every SQLite call of this crate runs inside [`hold`], and a
//! `pthread_atfork` handler closes the gate before the fork: it waits for the
//! calls under way to return, keeps new ones from starting, and opens the
//! gate again in the parent and in the child once the fork is done. A hold
//! never waits for another thread of ours (it covers SQLite work only), so
//! closing the gate always ends; it delays a fork by at most one SQLite call
//! or write transaction.

use std::cell::Cell;
use std::sync::{Once, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

static GATE: RwLock<()> = RwLock::new(());
static INSTALL: Once = Once::new();

thread_local! {
    /// How many holds this thread has open: only the outermost takes the gate,
    /// so a hold inside a hold never waits behind a fork that waits for it.
    static DEPTH: Cell<usize> = const { Cell::new(0) };
    /// The closed gate, from `prepare` to `parent` or `child` (the same thread).
    static CLOSED: Cell<Option<RwLockWriteGuard<'static, ()>>> = const { Cell::new(None) };
}

/// A stretch of SQLite calls that a fork waits for. Not `Send`: it belongs to
/// the thread that took it.
pub struct Hold {
    _gate: Option<RwLockReadGuard<'static, ()>>,
}

/// Enters the gate (or nests in this thread's open hold) until the result is
/// dropped.
pub fn hold() -> Hold {
    INSTALL.call_once(install);
    let outermost = DEPTH.with(|d| d.replace(d.get() + 1)) == 0;
    Hold {
        _gate: outermost.then(|| GATE.read().unwrap_or_else(PoisonError::into_inner)),
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get() - 1));
    }
}

fn install() {
    // SAFETY: registers three handlers with the C library; they only lock and
    // unlock GATE on the forking thread. A failed registration (ENOMEM) leaves
    // forks as unsafe as before, which is all that can be done about it.
    unsafe {
        libc::pthread_atfork(Some(close), Some(reopen), Some(reopen));
    }
}

/// Before a fork: wait for the SQLite calls under way, hold new ones back.
unsafe extern "C" fn close() {
    // A thread that forks from inside a hold (it cannot here; callbacks run
    // outside holds) would wait for itself: let it through as before.
    if DEPTH.with(Cell::get) > 0 {
        return;
    }
    let closed = GATE.write().unwrap_or_else(PoisonError::into_inner);
    CLOSED.with(|c| c.set(Some(closed)));
}

/// After a fork, in the parent and in the child: let SQLite calls start again.
unsafe extern "C" fn reopen() {
    CLOSED.with(|c| drop(c.take()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_nest_and_a_fork_waits_for_the_outermost() {
        let outer = hold();
        let inner = hold();
        drop(inner);
        // The gate is still held: a writer (what a fork takes) cannot enter.
        assert!(GATE.try_write().is_err());
        assert_eq!(DEPTH.with(Cell::get), 1);
        drop(outer);
        assert_eq!(DEPTH.with(Cell::get), 0);
    }
}
