//! When current claims leave the sliding windows, kept in memory so that
//! reads slide the windows themselves instead of waiting for the writer.
//!
//! Each sliding window has a [`Lane`]: the current claims it still counts,
//! oldest first, from its cursor up to a *loaded* mark. Claims beyond that
//! mark are read from the database in chunks ahead of need (so memory is
//! bounded whatever the number of addresses), and new claims are appended
//! while the lane is complete up to the newest claim. A claim that is
//! replaced is marked dead in every lane that holds it, so it never lapses
//! twice.

use crate::aggregates::PlayerId;
use crate::store::ClaimRow;
use crate::window::{Micros, Window};
use std::collections::VecDeque;

/// Most claims one lane holds in memory.
pub const LANE_CAP: usize = 65_536;
/// Claims read at once when a lane runs dry before a lapse it must apply.
pub const MISS_LOAD: usize = 4_096;
/// Claims read at once when topping a lane up ahead of need.
pub const REFILL_LOAD: usize = 16_384;
/// A lane with fewer claims than this in memory is topped up whenever they
/// lapse, so that how far ahead it reads follows the claim rate, not only
/// the clock: at thousands of claims a second a few minutes of them run out
/// between two looks of the publisher, and the read that then finds the lane
/// dry would read the database itself.
pub const LOW_WATER: usize = REFILL_LOAD;

/// `next_unloaded` when no current claim lies beyond `loaded`.
const NONE: Micros = Micros::MAX;
/// `next_unloaded` when it is not known yet.
const UNKNOWN: Micros = Micros::MIN;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub seq: i64,
    pub at: Micros,
    pub player: PlayerId,
    pub block: u8,
    /// False once the claim was replaced: it no longer counts anywhere.
    pub live: bool,
}

impl From<&ClaimRow> for Entry {
    fn from(c: &ClaimRow) -> Entry {
        Entry {
            seq: c.seq,
            at: c.at,
            player: c.player,
            block: c.block(),
            live: true,
        }
    }
}

/// One sliding window's schedule.
#[derive(Debug, Clone)]
pub struct Lane {
    pub window: Window,
    length: Micros,
    /// Current claims with `cursor < seq <= loaded`, oldest first.
    entries: VecDeque<Entry>,
    /// Claims with `seq <= cursor` have left the window.
    pub cursor: i64,
    pub loaded: i64,
    /// Time of the first current claim after `loaded`: a lower bound, or
    /// `UNKNOWN`, or `NONE` when the lane is complete up to the newest claim.
    next_unloaded: Micros,
    /// Reads made while the database held commits the view had not applied
    /// yet: (after, up to, newest seq in the database). The writer commits
    /// before the readers apply, so a claim in such a range that one of
    /// those commits replaced was already gone from the rows: the lane never
    /// lapses it, and when its replacement is applied the window must still
    /// take it out ([`Lane::missed`]).
    ahead: Vec<(i64, i64, i64)>,
}

/// A lane needs claims from the database before it can slide further.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeedLoad;

impl Lane {
    pub fn new(window: Window, cursor: i64, last_seq: i64) -> Lane {
        Lane {
            window,
            length: window.length().unwrap_or(Micros::MAX),
            entries: VecDeque::new(),
            cursor,
            loaded: cursor,
            next_unloaded: if cursor < last_seq { UNKNOWN } else { NONE },
            ahead: Vec::new(),
        }
    }

    /// When this lane next has something to do: a lapse, or a load.
    pub fn due(&self) -> Micros {
        let front = self.entries.front().map_or(NONE, |e| e.at);
        front.min(self.next_unloaded).saturating_add(self.length)
    }

    /// Pops the claims that have left the window by `now`, adding the live
    /// ones to `out`.
    pub fn pop_due(&mut self, now: Micros, out: &mut Vec<Entry>) -> Result<(), NeedLoad> {
        while let Some(e) = self.entries.front() {
            if e.at.saturating_add(self.length) > now {
                return Ok(());
            }
            self.cursor = e.seq;
            if e.live {
                out.push(*e);
            }
            self.entries.pop_front();
        }
        if self.next_unloaded != NONE && self.next_unloaded.saturating_add(self.length) <= now {
            return Err(NeedLoad);
        }
        Ok(())
    }

    /// Whether claim `seq`, replaced by claim `by`, is behind the cursor
    /// without having lapsed: it was missing from a read made after `by`
    /// was committed (see `ahead`).
    pub fn missed(&self, seq: i64, by: i64) -> bool {
        seq <= self.cursor
            && self
                .ahead
                .iter()
                .any(|&(after, upto, newest)| after < seq && seq <= upto && by <= newest)
    }

    /// The view has applied every commit up to `last_seq`.
    pub fn caught_up(&mut self, last_seq: i64) {
        self.ahead.retain(|&(_, _, newest)| newest > last_seq);
    }

    /// Forgets a replaced claim. True when the window still counted it.
    pub fn remove(&mut self, seq: i64) -> bool {
        if seq <= self.cursor {
            return false;
        }
        if seq <= self.loaded {
            if let Ok(i) = self.entries.binary_search_by_key(&seq, |e| e.seq) {
                self.entries[i].live = false;
            }
        }
        true
    }

    /// Takes a new claim, made after every claim so far (`prev_last` was
    /// the newest seq before it), if the lane is complete and has room.
    pub fn append(&mut self, e: Entry, prev_last: i64) {
        if self.loaded != prev_last {
            return;
        }
        if self.entries.len() < LANE_CAP {
            self.entries.push_back(e);
            self.loaded = e.seq;
        } else {
            self.next_unloaded = e.at;
        }
    }

    /// Takes claims read from the database: the current claims after
    /// `loaded`, oldest first, at most `limit` of them followed (when there
    /// were more) by the first one beyond, up to `last` (the newest seq).
    /// `newest` is the newest seq the database held when it read them.
    pub fn fill(&mut self, mut rows: Vec<ClaimRow>, limit: usize, last: i64, newest: i64) {
        let after = self.loaded;
        let beyond = (rows.len() > limit).then(|| rows.split_off(limit));
        let first_beyond = beyond.as_ref().and_then(|b| b.first());
        for r in rows.iter().filter(|r| r.seq > self.loaded) {
            self.entries.push_back(Entry::from(r));
        }
        match first_beyond {
            Some(next) => {
                self.loaded = rows.last().map_or(self.loaded, |r| r.seq.max(self.loaded));
                self.next_unloaded = next.at;
            }
            None => {
                self.loaded = last.max(self.loaded);
                self.next_unloaded = NONE;
            }
        }
        if newest > last && self.loaded > after {
            self.ahead.push((after, self.loaded, newest));
        }
    }

    /// Whether to read ahead: there are claims beyond `loaded`, there is
    /// room, and either they may lapse before `now + ahead` or the lane holds
    /// fewer than `low_water` claims.
    pub fn wants_more(&self, now: Micros, ahead: Micros, low_water: usize) -> bool {
        self.next_unloaded != NONE
            && self.entries.len() < LANE_CAP
            && (self.entries.len() < low_water
                || self.next_unloaded.saturating_add(self.length) <= now.saturating_add(ahead))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: Micros = 3_600_000_000;

    fn row(seq: i64, at: Micros) -> ClaimRow {
        ClaimRow {
            seq,
            ip: 0x0a00_0000 + seq as u32,
            player: 1,
            at,
        }
    }

    #[test]
    fn pops_exactly_at_the_window_length() {
        let mut lane = Lane::new(Window::Hour, 0, 0);
        lane.append(Entry::from(&row(1, 100)), 0);
        lane.append(Entry::from(&row(2, 200)), 1);
        let mut out = Vec::new();
        lane.pop_due(100 + H - 1, &mut out).unwrap();
        assert!(out.is_empty());
        lane.pop_due(100 + H, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!((lane.cursor, lane.due()), (1, 200 + H));
    }

    #[test]
    fn replaced_claims_never_lapse() {
        let mut lane = Lane::new(Window::Hour, 0, 0);
        lane.append(Entry::from(&row(1, 100)), 0);
        assert!(lane.remove(1), "still counted");
        let mut out = Vec::new();
        lane.pop_due(100 + H, &mut out).unwrap();
        assert!(out.is_empty());
        assert!(!lane.remove(1), "gone from the window already");
    }

    #[test]
    fn an_incomplete_lane_asks_for_a_load_when_it_may_be_behind() {
        let mut lane = Lane::new(Window::Hour, 0, 5);
        assert_eq!(lane.due(), Micros::MIN.saturating_add(H));
        assert_eq!(lane.pop_due(0, &mut Vec::new()), Err(NeedLoad));
        lane.fill(vec![row(1, 10), row(3, 30), row(4, 40)], 2, 5, 5);
        assert_eq!((lane.loaded, lane.len()), (3, 2));
        assert_eq!(lane.due(), 10 + H);
        let mut out = Vec::new();
        assert_eq!(
            lane.pop_due(40 + H, &mut out),
            Err(NeedLoad),
            "row 4 is not loaded"
        );
        lane.fill(vec![row(4, 40)], 2, 5, 5);
        assert_eq!(lane.pop_due(40 + H, &mut out), Ok(()));
        assert_eq!(out.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 3, 4]);
        assert_eq!(lane.due(), Micros::MAX);
    }
}
