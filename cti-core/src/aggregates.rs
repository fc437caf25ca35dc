//! In-memory mirror of the stored aggregates: per `/8` block, how many
//! addresses each player owns in every window. Holders, rankings and standings
//! are read from here; SQLite holds the same numbers durably (see `store`).
//!
//! One entry per (block, player) holds the counts of all six windows, and each
//! (block, window) keeps how many players are at each nonzero count, with the
//! XOR of their ids, in a small ordered map: so a claim or a lapse costs a
//! hash lookup and two steps in that map, and the holder is read from its
//! last level (alone at the top count: the XOR of one id is that id). Blocks
//! are never rescanned: finding who was left alone at the top by scanning a
//! block's players took over a third of a board read's time in a simulated
//! year (300,000 players, week 11).

use crate::window::Window;
use rustc_hash::FxHashMap as HashMap;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

/// Player ids are the SQLite rowids of the `players` table.
pub type PlayerId = u32;

/// Number of `/8` blocks.
pub const BLOCKS: usize = 256;

const WINDOWS: usize = Window::EVERY.len();

/// A change of one player's counts in one block, per window (indexed by `Window::index`).
pub type Delta = [i64; WINDOWS];

/// Net count changes of one batch, keyed by (block, player).
pub type Deltas = HashMap<(u8, PlayerId), Delta>;

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

/// The players at one count in one block and window.
#[derive(Debug, Clone, Copy, Default)]
struct Level {
    players: u32,
    /// XOR of their ids: the id itself when `players == 1`.
    xor: PlayerId,
}

/// Counts of one block in every window.
#[derive(Debug, Clone, Default)]
pub struct Block {
    counts: HashMap<PlayerId, [u32; WINDOWS]>,
    total: [u64; WINDOWS],
    /// Per window, the players at each nonzero count.
    levels: [BTreeMap<u32, Level>; WINDOWS],
}

impl Block {
    pub fn count(&self, window: Window, player: PlayerId) -> u32 {
        self.counts.get(&player).map_or(0, |c| c[window.index()])
    }

    pub fn counts(&self, player: PlayerId) -> [u32; WINDOWS] {
        self.counts.get(&player).copied().unwrap_or_default()
    }

    /// Applies a signed change in every window: the player's counts before
    /// and after. Counts never go below zero (a negative result would be a
    /// bookkeeping bug, which `store::check` catches).
    fn add(&mut self, player: PlayerId, delta: &Delta) -> ([u32; WINDOWS], [u32; WINDOWS]) {
        let counts = self.counts.entry(player).or_default();
        let before = *counts;
        for (w, d) in delta.iter().enumerate().filter(|(_, d)| **d != 0) {
            let old = counts[w];
            let new = (old as i64 + d).max(0) as u32;
            counts[w] = new;
            self.total[w] = self.total[w] + new as u64 - old as u64;
            let levels = &mut self.levels[w];
            if let Some(level) = levels.get_mut(&old) {
                level.players -= 1;
                level.xor ^= player;
                if level.players == 0 {
                    levels.remove(&old);
                }
            }
            if new > 0 {
                let level = levels.entry(new).or_default();
                level.players += 1;
                level.xor ^= player;
            }
        }
        let after = *counts;
        if after.iter().all(|c| *c == 0) {
            self.counts.remove(&player);
        }
        (before, after)
    }

    pub fn leader(&self, window: Window) -> Leader {
        let w = window.index();
        let (count, top) = self.levels[w]
            .last_key_value()
            .map_or((0, Level::default()), |(c, l)| (*c, *l));
        Leader {
            holder: (top.players == 1).then_some(top.xor),
            count,
            tied: top.players > 1,
            total: self.total[w],
        }
    }

    pub fn place(&self, window: Window, block: u8, player: PlayerId) -> Option<Place> {
        let w = window.index();
        let count = self.count(window, player);
        if count == 0 {
            return None;
        }
        let (mut above, mut level, mut of) = (0, 0, 0);
        for c in self.counts.values().map(|c| c[w]).filter(|c| *c > 0) {
            of += 1;
            above += u32::from(c > count);
            level += u32::from(c == count);
        }
        Some(Place {
            block,
            rank: above + 1,
            of,
            tied: level > 1,
            count,
        })
    }

    /// Players with addresses in `window`, with their counts.
    pub fn players(&self, window: Window) -> impl Iterator<Item = (PlayerId, u32)> + '_ {
        let w = window.index();
        self.counts
            .iter()
            .map(move |(p, c)| (*p, c[w]))
            .filter(|(_, c)| *c > 0)
    }
}

/// A player's row in a window ranking, before names are attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    pub player: PlayerId,
    pub blocks: Vec<u8>,
    /// Addresses owned in the window, in every block.
    pub claims: u64,
}

/// Players with at least this many addresses are ranked even without a block
/// (as ipv4.games lists them).
pub const RANKED_MIN: u64 = 10;

/// Every block's counts, and each player's total per window.
#[derive(Debug, Clone)]
pub struct Aggregates {
    blocks: Vec<Block>,
    /// Addresses each player owns across all blocks, per window; no entry
    /// that is zero in every window. One entry per player for every window:
    /// applying a change looks the player up once (a cache miss each, with a
    /// few hundred thousand players), not once per window.
    totals: HashMap<PlayerId, [u64; WINDOWS]>,
    /// Per window, the players with at least [`RANKED_MIN`] addresses, most
    /// addresses first, kept as totals change: a ranking reads them, not
    /// every live player, and a top list reads only its first entries.
    ranked: [BTreeSet<(Reverse<u64>, PlayerId)>; WINDOWS],
}

impl Default for Aggregates {
    fn default() -> Self {
        Aggregates {
            blocks: vec![Block::default(); BLOCKS],
            totals: Default::default(),
            ranked: Default::default(),
        }
    }
}

impl Aggregates {
    pub fn block(&self, block: u8) -> &Block {
        &self.blocks[block as usize]
    }

    /// (block, player) entries held: what the memory of the counts grows
    /// with (a player's addresses spread over more blocks cost more).
    pub fn block_players(&self) -> usize {
        self.blocks.iter().map(|b| b.counts.len()).sum()
    }

    /// Applies a batch of changes.
    pub fn apply(&mut self, deltas: &Deltas) {
        for (&(b, p), d) in deltas {
            let (before, after) = self.blocks[b as usize].add(p, d);
            if before == after {
                continue;
            }
            let totals = self.totals.entry(p).or_default();
            for w in (0..WINDOWS).filter(|&w| after[w] != before[w]) {
                let was = totals[w];
                let now = (was + u64::from(after[w])).saturating_sub(u64::from(before[w]));
                totals[w] = now;
                let ranked = &mut self.ranked[w];
                if was >= RANKED_MIN {
                    ranked.remove(&(Reverse(was), p));
                }
                if now >= RANKED_MIN {
                    ranked.insert((Reverse(now), p));
                }
            }
            if totals.iter().all(|t| *t == 0) {
                self.totals.remove(&p);
            }
        }
    }

    pub fn leader(&self, window: Window, block: u8) -> Leader {
        self.block(block).leader(window)
    }

    /// Addresses `player` owns in `window`, in every block.
    pub fn total(&self, window: Window, player: PlayerId) -> u64 {
        self.totals.get(&player).map_or(0, |t| t[window.index()])
    }

    /// Players owning addresses in `window`.
    pub fn players(&self, window: Window) -> impl Iterator<Item = PlayerId> + '_ {
        let w = window.index();
        self.totals
            .iter()
            .filter(move |(_, t)| t[w] > 0)
            .map(|(p, _)| *p)
    }

    /// Every holder of a block, and every player with at least [`RANKED_MIN`]
    /// addresses, unsorted (names decide the final order).
    pub fn standings(&self, window: Window) -> Vec<Standing> {
        self.top_standings(window, usize::MAX).0
    }

    /// The rows a ranking's first `limit` places come from, unsorted, and
    /// how many rows the whole ranking has. Holders rank above everyone
    /// without a block, so past the holders only the players with the most
    /// addresses are read (from the ordered `ranked`), down to the `limit`-th
    /// and every player tied with it: names break those ties.
    pub fn top_standings(&self, window: Window, limit: usize) -> (Vec<Standing>, usize) {
        let mut rows: HashMap<PlayerId, Standing> = HashMap::default();
        for block in 0..BLOCKS {
            if let Some(p) = self.leader(window, block as u8).holder {
                self.row(&mut rows, window, p).blocks.push(block as u8);
            }
        }
        let ranked = &self.ranked[window.index()];
        // Holders under the minimum are ranked too, though not in `ranked`.
        let whole = ranked.len() + rows.values().filter(|s| s.claims < RANKED_MIN).count();
        let wanted = limit.saturating_sub(rows.len());
        let (mut taken, mut boundary) = (0, None);
        for &(Reverse(total), player) in ranked {
            if wanted == 0 || boundary.is_some_and(|b| total < b) {
                break;
            }
            if rows.contains_key(&player) {
                continue;
            }
            let blocks = Vec::new();
            rows.insert(
                player,
                Standing {
                    player,
                    blocks,
                    claims: total,
                },
            );
            taken += 1;
            if taken == wanted {
                boundary = Some(total);
            }
        }
        (rows.into_values().collect(), whole)
    }

    fn row<'a>(
        &self,
        rows: &'a mut HashMap<PlayerId, Standing>,
        window: Window,
        player: PlayerId,
    ) -> &'a mut Standing {
        rows.entry(player).or_insert_with(|| Standing {
            player,
            blocks: Vec::new(),
            claims: self.total(window, player),
        })
    }

    /// Blocks of `window` in which `player` owns addresses.
    pub fn places(&self, window: Window, player: PlayerId) -> Vec<Place> {
        (0..BLOCKS)
            .filter_map(|b| self.block(b as u8).place(window, b as u8, player))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(a: &mut Aggregates, w: Window, b: u8, p: PlayerId, d: i64) {
        let mut delta = [0; WINDOWS];
        delta[w.index()] = d;
        a.apply(&Deltas::from_iter([((b, p), delta)]));
    }

    #[test]
    fn leader_needs_strictly_the_most() {
        let mut a = Aggregates::default();
        let w = Window::All;
        assert_eq!(a.leader(w, 9).holder, None);
        add(&mut a, w, 9, 1, 2);
        add(&mut a, w, 9, 2, 2);
        let l = a.leader(w, 9);
        assert_eq!((l.holder, l.tied, l.count, l.total), (None, true, 2, 4));
        add(&mut a, w, 9, 2, 1);
        assert_eq!(a.leader(w, 9).holder, Some(2));
        add(&mut a, w, 9, 2, -3);
        assert_eq!(
            a.leader(w, 9),
            Leader {
                holder: Some(1),
                count: 2,
                tied: false,
                total: 2
            }
        );
        add(&mut a, w, 9, 1, -2);
        assert_eq!(
            a.leader(w, 9),
            Leader {
                holder: None,
                count: 0,
                tied: false,
                total: 0
            }
        );
        assert_eq!(
            a.leader(Window::Hour, 9).total,
            0,
            "other windows untouched"
        );
    }

    #[test]
    fn top_survives_mixed_changes_in_one_batch() {
        let mut a = Aggregates::default();
        let w = Window::Day;
        add(&mut a, w, 3, 1, 5);
        add(&mut a, w, 3, 2, 4);
        let mut d1 = [0; WINDOWS];
        d1[w.index()] = -2;
        let mut d2 = [0; WINDOWS];
        d2[w.index()] = 1;
        a.apply(&Deltas::from_iter([((3, 1), d1), ((3, 2), d2)]));
        assert_eq!(
            a.leader(w, 3),
            Leader {
                holder: Some(2),
                count: 5,
                tied: false,
                total: 8
            }
        );
    }

    /// Leaders kept from the levels equal a recount after every step of a
    /// long random walk of gains and losses among a few players (so ties,
    /// tops losing their lead and tops going to zero all happen often).
    /// A small deterministic generator: `next(n)` is below `n`.
    fn xorshift(mut x: u64) -> impl FnMut(u64) -> u64 {
        move |n| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        }
    }

    #[test]
    fn leaders_equal_a_recount_through_random_changes() {
        let mut a = Aggregates::default();
        let mut counts = [[0i64; 5]; WINDOWS];
        let mut next = xorshift(0x9E37_79B9_7F4A_7C15);
        for step in 0..20_000 {
            let w = next(WINDOWS as u64) as usize;
            let p = next(5) as usize;
            let d = if next(2) == 0 || counts[w][p] == 0 {
                1
            } else {
                -1
            };
            counts[w][p] += d;
            let mut delta = [0; WINDOWS];
            delta[w] = d;
            a.apply(&Deltas::from_iter([((4, p as PlayerId), delta)]));
            let top = *counts[w].iter().max().unwrap();
            let at_top = counts[w].iter().filter(|c| **c == top).count();
            let holder = counts[w].iter().position(|c| *c == top);
            let expected = Leader {
                holder: (top > 0 && at_top == 1).then(|| holder.unwrap() as PlayerId),
                count: top as u32,
                tied: top > 0 && at_top > 1,
                total: counts[w].iter().sum::<i64>() as u64,
            };
            assert_eq!(a.leader(Window::EVERY[w], 4), expected, "step {step}");
        }
    }

    #[test]
    fn standings_follow_the_ranked_threshold_both_ways() {
        let mut a = Aggregates::default();
        let w = Window::Week;
        let ranked = |a: &Aggregates| {
            let mut p: Vec<_> = a.standings(w).into_iter().map(|s| s.player).collect();
            p.sort_unstable();
            p
        };
        // Players 1 and 4 hold blocks 5 and 7; players 2 and 3 tie in block 6.
        add(&mut a, w, 5, 1, 1);
        add(&mut a, w, 7, 4, 5);
        add(&mut a, w, 6, 2, RANKED_MIN as i64 - 1);
        add(&mut a, w, 6, 3, RANKED_MIN as i64 - 1);
        assert_eq!(
            ranked(&a),
            [1, 4],
            "ties hold nothing, and 9 addresses rank nobody"
        );
        add(&mut a, w, 7, 2, 1);
        assert_eq!(a.leader(w, 7).holder, Some(4));
        assert_eq!(
            ranked(&a),
            [1, 2, 4],
            "10 addresses over two blocks rank player 2"
        );
        add(&mut a, w, 7, 2, -1);
        assert_eq!(ranked(&a), [1, 4], "back under the threshold");
        assert!(
            Aggregates::default().standings(Window::All).is_empty(),
            "other windows untouched"
        );
    }

    /// A batch that moves players in many blocks at once leaves the same
    /// totals and rankings as its deltas applied one by one, in every window.
    #[test]
    fn a_batch_ranks_as_its_deltas_one_by_one() {
        let (mut batched, mut single) = (Aggregates::default(), Aggregates::default());
        let mut next = xorshift(0x9E37_79B9_7F4A_7C15);
        for _ in 0..200 {
            let mut deltas = Deltas::default();
            for _ in 0..1 + next(40) {
                let (b, p) = (next(16) as u8, 1 + next(8) as PlayerId);
                let d = deltas.entry((b, p)).or_default();
                for (w, x) in d.iter_mut().enumerate() {
                    let have = i64::from(single.block(b).counts(p)[w]);
                    // Mostly gains, some losses, never below zero.
                    *x = if next(4) == 0 {
                        -have.min(1 + next(3) as i64)
                    } else {
                        next(6) as i64
                    };
                }
            }
            batched.apply(&deltas);
            for (&key, d) in &deltas {
                single.apply(&Deltas::from_iter([(key, *d)]));
            }
            for w in Window::EVERY {
                let rows = |a: &Aggregates| {
                    let mut whole: Vec<_> = a
                        .standings(w)
                        .into_iter()
                        .map(|s| (s.player, s.claims))
                        .collect();
                    whole.sort_unstable();
                    let mut players: Vec<_> = a.players(w).map(|p| (p, a.total(w, p))).collect();
                    players.sort_unstable();
                    (whole, players)
                };
                assert_eq!(rows(&batched), rows(&single), "{}", w.name());
            }
        }
    }

    /// The rows of a top list, once ranked, are the first rows of the whole
    /// ranking, through a random walk of many players over a few blocks
    /// (many ties on addresses, holders gained and lost). Ties are broken by
    /// a function of the player only, as names are, so the rows tied at the
    /// boundary must all be there.
    #[test]
    fn top_standings_are_the_head_of_the_whole_ranking() {
        let mut a = Aggregates::default();
        let mut next = xorshift(0x2545_F491_4F6C_DD1D);
        let order = |s: &Standing| {
            (
                Reverse(s.blocks.len()),
                Reverse(s.claims),
                s.player % 7,
                s.player,
            )
        };
        let ranking = |mut rows: Vec<Standing>, limit: usize| {
            rows.sort_by_key(order);
            rows.truncate(limit);
            rows.into_iter()
                .map(|s| (s.player, s.blocks.len(), s.claims))
                .collect::<Vec<_>>()
        };
        for step in 0..3_000 {
            let w = Window::EVERY[next(2) as usize * 5];
            let (b, p) = (next(12) as u8, 1 + next(60) as PlayerId);
            let d = if next(3) == 0 && a.block(b).count(w, p) > 0 {
                -1
            } else {
                1
            };
            add(&mut a, w, b, p, d);
            if step % 50 != 0 {
                continue;
            }
            let whole = a.standings(w);
            for limit in [0, 1, 3, 10, 11, 25, 60, 1000] {
                let (top, ranked) = a.top_standings(w, limit);
                assert_eq!(ranked, whole.len(), "step {step}");
                assert_eq!(
                    ranking(top, limit),
                    ranking(whole.clone(), limit),
                    "step {step} limit {limit}"
                );
            }
        }
    }

    #[test]
    fn places_rank_by_strictly_greater_counts() {
        let mut a = Aggregates::default();
        let w = Window::All;
        for (p, n) in [(1, 5), (2, 3), (3, 3), (4, 1)] {
            add(&mut a, w, 9, p, n);
        }
        let p = |id| a.block(9).place(w, 9, id).unwrap();
        assert_eq!((p(1).rank, p(1).tied, p(1).of), (1, false, 4));
        assert_eq!((p(2).rank, p(2).tied), (2, true));
        assert_eq!((p(3).rank, p(3).tied), (2, true));
        assert_eq!((p(4).rank, p(4).tied), (4, false));
        assert_eq!(a.block(9).place(w, 9, 5), None);
    }
}
