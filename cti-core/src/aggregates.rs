//! In-memory mirror of the stored aggregates: per window, per `/8` block, how
//! many addresses each player owns. Holders, rankings and standings are read
//! from here; SQLite holds the same numbers durably (see `store`).

use crate::window::Window;
use rustc_hash::FxHashMap as HashMap;
use std::cmp::Reverse;
use std::collections::BTreeSet;

/// Player ids are the SQLite rowids of the `players` table.
pub type PlayerId = u32;

/// Number of `/8` blocks.
pub const BLOCKS: usize = 256;

/// Net count changes of one batch, keyed by (window, block, player).
pub type Deltas = HashMap<(Window, u8, PlayerId), i64>;

/// Who holds a block: strictly the most addresses, or nobody on a tie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leader {
    pub holder: Option<PlayerId>,
    /// The top count (the holder's count, or the tied count).
    pub count: u32,
    pub tied: bool,
    /// Addresses claimed in the block (within the window).
    pub total: u64,
}

/// A player's place in one block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub block: u8,
    /// 1 + the number of players with strictly more addresses here.
    pub rank: u32,
    /// Players with at least one address here.
    pub of: u32,
    /// Someone else has exactly as many.
    pub tied: bool,
    pub count: u32,
}

/// Counts of one block in one window, ordered for O(log n) leader lookups.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    counts: HashMap<PlayerId, u32>,
    order: BTreeSet<(Reverse<u32>, PlayerId)>,
    total: u64,
}

impl Tally {
    pub fn count(&self, player: PlayerId) -> u32 {
        self.counts.get(&player).copied().unwrap_or(0)
    }

    /// Applies a signed change; counts never go below zero (a negative result
    /// would be a bookkeeping bug, caught by `store::check`).
    pub fn add(&mut self, player: PlayerId, delta: i64) {
        let old = self.count(player);
        let new = (old as i64 + delta).max(0) as u32;
        if old == new {
            return;
        }
        if old > 0 {
            self.order.remove(&(Reverse(old), player));
        }
        if new > 0 {
            self.order.insert((Reverse(new), player));
            self.counts.insert(player, new);
        } else {
            self.counts.remove(&player);
        }
        self.total = self.total + new as u64 - old as u64;
    }

    pub fn leader(&self) -> Leader {
        let mut top = self.order.iter();
        let first = top.next();
        let second = top.next();
        match (first, second) {
            (None, _) => Leader {
                holder: None,
                count: 0,
                tied: false,
                total: self.total,
            },
            (Some(&(Reverse(c1), p)), second) => {
                let tied = matches!(second, Some(&(Reverse(c2), _)) if c2 == c1);
                Leader {
                    holder: (!tied).then_some(p),
                    count: c1,
                    tied,
                    total: self.total,
                }
            }
        }
    }

    pub fn place(&self, block: u8, player: PlayerId) -> Option<Place> {
        let count = self.count(player);
        if count == 0 {
            return None;
        }
        let above = self.order.range(..(Reverse(count), 0)).count() as u32;
        let level = self
            .order
            .range((Reverse(count), 0)..=(Reverse(count), PlayerId::MAX))
            .count();
        Some(Place {
            block,
            rank: above + 1,
            of: self.counts.len() as u32,
            tied: level > 1,
            count,
        })
    }

    pub fn players(&self) -> impl Iterator<Item = (PlayerId, u32)> + '_ {
        self.counts.iter().map(|(p, c)| (*p, *c))
    }
}

/// A player's row in a window ranking, before names are attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    pub player: PlayerId,
    pub blocks: Vec<u8>,
    /// Addresses owned in the blocks held.
    pub claims: u64,
}

/// Every tally of every window.
#[derive(Debug, Clone)]
pub struct Aggregates {
    tallies: Vec<Tally>,
}

impl Default for Aggregates {
    fn default() -> Self {
        Aggregates {
            tallies: vec![Tally::default(); Window::EVERY.len() * BLOCKS],
        }
    }
}

impl Aggregates {
    pub fn tally(&self, window: Window, block: u8) -> &Tally {
        &self.tallies[window.index() * BLOCKS + block as usize]
    }

    pub fn tally_mut(&mut self, window: Window, block: u8) -> &mut Tally {
        &mut self.tallies[window.index() * BLOCKS + block as usize]
    }

    pub fn apply(&mut self, deltas: &Deltas) {
        for (&(w, b, p), &d) in deltas {
            self.tally_mut(w, b).add(p, d);
        }
    }

    /// Players holding at least one block, unsorted (names decide the final order).
    pub fn standings(&self, window: Window) -> Vec<Standing> {
        let mut by_player: HashMap<PlayerId, Standing> = HashMap::default();
        for block in 0..BLOCKS {
            let leader = self.tally(window, block as u8).leader();
            if let Some(p) = leader.holder {
                let s = by_player.entry(p).or_insert_with(|| Standing {
                    player: p,
                    blocks: Vec::new(),
                    claims: 0,
                });
                s.blocks.push(block as u8);
                s.claims += leader.count as u64;
            }
        }
        by_player.into_values().collect()
    }

    /// Blocks of `window` in which `player` owns addresses.
    pub fn places(&self, window: Window, player: PlayerId) -> Vec<Place> {
        (0..BLOCKS)
            .filter_map(|b| self.tally(window, b as u8).place(b as u8, player))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_needs_a_strict_majority_of_counts() {
        let mut t = Tally::default();
        assert_eq!(t.leader().holder, None);
        t.add(1, 2);
        t.add(2, 2);
        let l = t.leader();
        assert_eq!((l.holder, l.tied, l.count, l.total), (None, true, 2, 4));
        t.add(2, 1);
        assert_eq!(t.leader().holder, Some(2));
        t.add(2, -3);
        assert_eq!(
            t.leader(),
            Leader {
                holder: Some(1),
                count: 2,
                tied: false,
                total: 2
            }
        );
    }

    #[test]
    fn places_rank_by_strictly_greater_counts() {
        let mut t = Tally::default();
        t.add(1, 5);
        t.add(2, 3);
        t.add(3, 3);
        t.add(4, 1);
        let p = |id| t.place(9, id).unwrap();
        assert_eq!((p(1).rank, p(1).tied, p(1).of), (1, false, 4));
        assert_eq!((p(2).rank, p(2).tied), (2, true));
        assert_eq!((p(3).rank, p(3).tied), (2, true));
        assert_eq!((p(4).rank, p(4).tied), (4, false));
        assert_eq!(t.place(9, 5), None);
    }
}
