//! Found by the year bench (`cargo bench -p cti-core --bench year`): the
//! readers' view reads the lapse schedule from the database, which may
//! already hold commits the view has not applied yet (the publisher is a
//! batch or more behind the writer). A claim replaced by such a commit is
//! missing from what the view reads, so its window never lapses it; and when
//! the replacing batch is applied after the window's cursor has passed the
//! old claim, nothing takes it out either. The view then counts it forever.
//!
//! Here the publisher is held up on purpose (a claim's callback blocks, and
//! callbacks run on the publishing thread) while the writer commits a steal
//! of a claim the hour window has not read yet, and a read slides the hour
//! window past it: block 90 then counts 2 addresses in the hour instead of 1,
//! and `check()` reported the readers' tallies wrong. The lanes now remember
//! reads made ahead of the view (`schedule::Lane::missed`).

use cti_core::{Limits, ManualClock, NickLimits, Store, Window};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

const SEC: i64 = 1_000_000;
const HOUR: i64 = 3600 * SEC;
const T0: i64 = 1_700_000_000_000_000;
/// More current claims than a lane reads at once when it runs dry, so the
/// hour window reads the tail of them from the database after the reopen.
const CLAIMS: u32 = 5000;

fn open(path: &std::path::Path, clock: &Arc<ManualClock>) -> Store {
    let store = Store::open_with_clock(path, clock.clone()).unwrap();
    store.set_limits(Limits::OFF).unwrap();
    store.set_nick_limits(NickLimits::OFF).unwrap();
    store
}

fn ip(i: u32) -> String {
    std::net::Ipv4Addr::from((90 << 24) | i).to_string()
}

/// Claims every address at once, in a few large batches.
fn claim_all(store: &Store) {
    let (tx, rx) = mpsc::channel();
    for i in 0..CLAIMS {
        let tx = tx.clone();
        store
            .claim_with(&ip(i), "early", Box::new(move |r| drop(tx.send(r))))
            .unwrap();
    }
    drop(tx);
    assert_eq!(rx.iter().filter(|r| r.is_ok()).count(), CLAIMS as usize);
}

fn hour_total(store: &Store) -> u64 {
    store.blocks(Window::Hour).unwrap().blocks[90].total
}

#[test]
fn a_claim_replaced_while_the_view_lags_still_leaves_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.db");
    let clock = Arc::new(ManualClock::new(T0));
    claim_all(&open(&path, &clock));
    // Reopened, the hour window holds the oldest claims in memory and reads
    // the rest from the database when it gets to them.
    clock.set(T0 + SEC);
    let store = open(&path, &clock);
    assert_eq!(hour_total(&store), u64::from(CLAIMS));

    // Hold the publisher inside a claim's callback.
    let (entered_tx, entered) = mpsc::channel();
    let (release, held) = mpsc::channel::<()>();
    clock.set(T0 + 2 * SEC);
    store
        .claim_with(
            "91.0.0.1",
            "holder",
            Box::new(move |r| {
                r.unwrap();
                entered_tx.send(()).unwrap();
                let _ = held.recv_timeout(Duration::from_secs(30));
            }),
        )
        .unwrap();
    entered.recv_timeout(Duration::from_secs(10)).unwrap();

    // The writer commits a steal of a claim the hour window has not read yet;
    // it is not published while the publisher is held.
    clock.set(T0 + 3 * SEC);
    let (stolen_tx, stolen) = mpsc::channel();
    store
        .claim_with(
            &ip(CLAIMS - 10),
            "thief",
            Box::new(move |r| drop(stolen_tx.send(r))),
        )
        .unwrap();
    wait_for_commit(&store, 2);

    // An hour after the first claims, a read slides the hour window past
    // all of them, reading the tail from the database (without the stolen one).
    clock.set(T0 + HOUR + SEC);
    let _ = hour_total(&store);

    release.send(()).unwrap();
    stolen
        .recv_timeout(Duration::from_secs(10))
        .unwrap()
        .unwrap();
    // In block 90's hour: the thief's address, nothing else.
    assert_eq!(hour_total(&store), 1, "every early claim left the hour");
    store.check().unwrap();
}

/// Waits until the writer has committed `n` transactions since the store
/// was opened (whether or not they are published yet).
fn wait_for_commit(store: &Store, n: u64) {
    for _ in 0..1000 {
        if store.stats().unwrap().commits >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("the writer did not commit");
}
