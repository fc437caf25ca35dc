//! `cti_check`: recounts everything from the `claims` table and compares it
//! with what the store has persisted, what the writer holds, and what readers
//! see as of now. Runs on the writer thread, so no commit moves the data
//! underneath it.

use crate::aggregates::{Aggregates, BLOCKS};
use crate::error::{Error, Result};
use crate::reader::Reader;
use crate::store::{Db, Holder, RECENT_KEEP};
use crate::window::{Micros, Window};

/// `staged` is the writer's state as of its last commit.
pub fn check(db: &Db, staged: &Aggregates, reader: &Reader) -> Result<()> {
    let crate::store::Persisted {
        loaded,
        holders,
        max_seq,
    } = db.persisted()?;
    if loaded.last_seq < max_seq {
        return Err(Error::Inconsistent(format!(
            "last_seq {} is below a stored claim's {max_seq}",
            loaded.last_seq
        )));
    }
    let by_cursor = db.recount(|w, seq, _| loaded.cursors.counts(w, seq))?;
    compare("stored tallies", &loaded.aggregates, &by_cursor)?;
    compare("the writer's tallies", staged, &by_cursor)?;
    let at_commit = db.recount(counts_at(loaded.updated_at))?;
    compare("stored window cursors", &by_cursor, &at_commit)?;
    for w in Window::EVERY {
        for b in 0..BLOCKS {
            let expect = Holder::of(&by_cursor.leader(w, b as u8));
            let got = holders.get(&(w, b as u8)).copied();
            if got != expect {
                return Err(Error::Inconsistent(format!(
                    "holder of block {b} in {}: stored {got:?}, recount {expect:?}",
                    w.name()
                )));
            }
        }
    }
    // The readers' view, as of now: copied out so that reads go on meanwhile.
    let (now, aggregates, recent, names_missing) = {
        let view = reader.read();
        let missing = view
            .aggregates()
            .players(Window::All)
            .chain(view.recent().map(|r| r.player))
            .filter(|p| view.name(*p) == "?")
            .count();
        let recent: Vec<_> = view.recent().copied().collect();
        (view.now(), view.aggregates().clone(), recent, missing)
    };
    compare(
        "the readers' tallies as of now",
        &aggregates,
        &db.recount(counts_at(now))?,
    )?;
    if recent != db.newest(RECENT_KEEP)? {
        return Err(Error::Inconsistent(
            "the recent list is not the newest current claims".into(),
        ));
    }
    if names_missing > 0 {
        return Err(Error::Inconsistent(format!(
            "{names_missing} live players have no name in memory"
        )));
    }
    Ok(())
}

/// Whether a claim made at `at` counts in each window at time `now`.
fn counts_at(now: Micros) -> impl Fn(Window, i64, Micros) -> bool {
    move |w, _, at| w.length().is_none_or(|l| now - at < l)
}

fn compare(what: &str, got: &Aggregates, expect: &Aggregates) -> Result<()> {
    for w in Window::EVERY {
        for b in 0..BLOCKS {
            let mut gv: Vec<_> = got.block(b as u8).players(w).collect();
            let mut ev: Vec<_> = expect.block(b as u8).players(w).collect();
            gv.sort_unstable();
            ev.sort_unstable();
            if gv != ev {
                return Err(Error::Inconsistent(format!(
                    "{what} of block {b} in {}: {gv:?}, recount {ev:?}",
                    w.name()
                )));
            }
        }
        let mut totals: Vec<_> = got.players(w).map(|p| (p, got.total(w, p))).collect();
        let mut expected: Vec<_> = expect.players(w).map(|p| (p, expect.total(w, p))).collect();
        totals.sort_unstable();
        expected.sort_unstable();
        if totals != expected {
            return Err(Error::Inconsistent(format!(
                "{what}: players' totals in {} differ from the recount",
                w.name()
            )));
        }
    }
    Ok(())
}
