//! A store handle in a fork child: calls return `Forked`, and ending a
//! subscription or closing the store there only forgets them (the threads
//! they would stop or join belong to the parent).

use cti_core::{Error, Store};
use std::panic::{catch_unwind, AssertUnwindSafe};

extern "C" {
    fn fork() -> i32;
    fn waitpid(pid: i32, status: *mut i32, options: i32) -> i32;
    fn alarm(seconds: u32) -> u32;
    fn _exit(code: i32) -> !;
}

/// Runs `child` in a fork child (killed by SIGALRM after 10 s, so a hang
/// fails instead of hanging) and returns its exit status as `waitpid` gives it.
fn in_fork_child(child: impl FnOnce() -> bool) -> i32 {
    // SAFETY: the child only runs `child` and then `_exit`s.
    let pid = unsafe { fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: plain libc calls in the child.
        unsafe { alarm(10) };
        let code = match catch_unwind(AssertUnwindSafe(child)) {
            Ok(true) => 0,
            Ok(false) => 2,
            Err(_) => 3,
        };
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { _exit(code) }
    }
    let mut status = 0;
    // SAFETY: our own child.
    assert_eq!(unsafe { waitpid(pid, &mut status, 0) }, pid);
    status
}

#[test]
fn a_fork_child_gets_forked_and_only_forgets_the_parents_subscription_and_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Some(Store::open(&dir.path().join("g.db")).unwrap());
    let s = store.as_ref().unwrap();
    s.claim("1.2.3.4", "parent").unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let mut sub = Some(
        s.subscribe(Box::new(move |e: &str| drop(tx.send(e.to_string()))))
            .unwrap(),
    );
    let status = in_fork_child(|| {
        let store = store.take().unwrap();
        let refused = [
            store.claim("1.2.3.5", "child").err(),
            store.health().err(),
            store.check().err(),
            store.subscribe(Box::new(|_: &str| {})).err(),
        ];
        let all_forked = refused.iter().all(|e| matches!(e, Some(Error::Forked(_))));
        drop(sub.take());
        drop(store);
        all_forked
    });
    assert_eq!(
        status, 0,
        "child status {status:#x} (2: not Forked, 3: a panic, 14: hung)"
    );
    // The parent's subscription and store still work.
    let store = store.unwrap();
    store.claim("1.2.3.6", "parent").unwrap();
    let event: serde_json::Value =
        serde_json::from_str(&rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap())
            .unwrap();
    assert_eq!(event["claims"][0]["ip"], "1.2.3.6");
    store.check().unwrap();
}
