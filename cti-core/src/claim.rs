//! The claim rule, as count changes.
//!
//! Each address belongs to whoever claimed it last. A claim by another player
//! replaces the address's current claim: the previous owner loses the address
//! in every window that still counted the old claim, and the claimant gains it
//! in every window (a fresh claim counts everywhere). The current owner
//! claiming again changes nothing while their claim is younger than
//! [`REFRESH_AFTER`] (as ipv4.games: hammering an address does not keep it in
//! the hour window, nor flood the recent list); after that it refreshes the
//! claim, which brings the address back into windows it had left.
//!
//! Windows slide by *cursors*: every claim gets a sequence number, and a window
//! has expired every claim up to its cursor. A claim counts in a window while
//! its sequence number is above the window's cursor.

use crate::aggregates::{Deltas, PlayerId};
use crate::window::{Micros, Window};

/// Age at which an owner's repeat claim refreshes the claim's time: 3,600 s.
pub const REFRESH_AFTER: Micros = 3_600_000_000;

/// Per window, the sequence number of the last claim it has expired.
/// `All` never expires anything, so its cursor stays 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursors(pub [i64; 6]);

impl Cursors {
    pub fn counts(&self, window: Window, seq: i64) -> bool {
        seq > self.0[window.index()]
    }
    pub fn get(&self, window: Window) -> i64 {
        self.0[window.index()]
    }
    pub fn set(&mut self, window: Window, seq: i64) {
        self.0[window.index()] = seq;
    }
}

/// The current claim of an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub player: PlayerId,
    pub seq: i64,
    pub at: Micros,
}

/// Whether a claim at `now` changes anything.
pub fn takes_effect(previous: Option<&Owner>, claimant: PlayerId, now: Micros) -> bool {
    match previous {
        Some(p) if p.player == claimant => now - p.at >= REFRESH_AFTER,
        _ => true,
    }
}

/// Records a new claim of an address in `block` that was owned by `previous`.
pub fn claim(
    deltas: &mut Deltas,
    cursors: &Cursors,
    block: u8,
    previous: Option<&Owner>,
    claimant: PlayerId,
) {
    if let Some(prev) = previous {
        uncount(deltas, cursors, block, prev);
    }
    count(deltas, block, claimant);
}

/// Takes a replaced claim out of every window that still counted it.
pub fn uncount(deltas: &mut Deltas, cursors: &Cursors, block: u8, replaced: &Owner) {
    let d = deltas.entry((block, replaced.player)).or_default();
    for w in Window::EVERY {
        if cursors.counts(w, replaced.seq) {
            d[w.index()] -= 1;
        }
    }
}

/// Counts a fresh claim in every window.
pub fn count(deltas: &mut Deltas, block: u8, claimant: PlayerId) {
    let d = deltas.entry((block, claimant)).or_default();
    for w in Window::EVERY {
        d[w.index()] += 1;
    }
}

/// Records that a still-current claim has slid out of `window`.
pub fn expire(deltas: &mut Deltas, window: Window, block: u8, owner: PlayerId) {
    deltas.entry((block, owner)).or_default()[window.index()] -= 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(d: &Deltas, w: Window, p: PlayerId) -> i64 {
        d.get(&(7, p)).map_or(0, |d| d[w.index()])
    }

    fn owner(player: PlayerId, seq: i64) -> Owner {
        Owner { player, seq, at: 0 }
    }

    #[test]
    fn first_claim_counts_everywhere() {
        let mut d = Deltas::default();
        claim(&mut d, &Cursors::default(), 7, None, 1);
        assert!(Window::EVERY.iter().all(|w| net(&d, *w, 1) == 1));
    }

    #[test]
    fn steal_moves_the_address_only_where_it_still_counted() {
        let mut cursors = Cursors::default();
        cursors.set(Window::Hour, 10); // the hour has expired claims 1..=10
        let mut d = Deltas::default();
        claim(&mut d, &cursors, 7, Some(&owner(1, 5)), 2);
        assert_eq!(net(&d, Window::Hour, 1), 0, "already gone from the hour");
        assert_eq!(net(&d, Window::Day, 1), -1);
        assert_eq!(net(&d, Window::All, 1), -1);
        assert!(Window::EVERY.iter().all(|w| net(&d, *w, 2) == 1));
    }

    #[test]
    fn repeat_claim_refreshes_expired_windows_only() {
        let mut cursors = Cursors::default();
        cursors.set(Window::Hour, 10);
        let mut d = Deltas::default();
        claim(&mut d, &cursors, 7, Some(&owner(1, 5)), 1);
        assert_eq!(net(&d, Window::Hour, 1), 1, "back in the hour");
        assert_eq!(net(&d, Window::Day, 1), 0);
        assert_eq!(net(&d, Window::All, 1), 0);
    }

    #[test]
    fn owner_repeats_take_effect_only_after_an_hour() {
        let prev = Owner {
            player: 1,
            seq: 3,
            at: 1_000,
        };
        assert!(!takes_effect(Some(&prev), 1, 1_000 + REFRESH_AFTER - 1));
        assert!(takes_effect(Some(&prev), 1, 1_000 + REFRESH_AFTER));
        assert!(
            takes_effect(Some(&prev), 2, 1_001),
            "another nick always takes it"
        );
        assert!(takes_effect(None, 1, 0));
    }
}
