//! What readers see: the game as of `now`, in memory.
//!
//! The view starts from what the store loaded, takes each committed batch of
//! claims from the writer (`apply`), and slides the windows itself
//! (`advance`) from its lapse schedule, so a read never waits for a commit.
//! Only live players are kept: those owning an address or in the recent list.

use crate::aggregates::{Aggregates, Deltas, Leader, PlayerId, BLOCKS};
use crate::claim::{self, Cursors, Owner};
use crate::error::{Error, Result};
use crate::schedule::{Entry, Lane, NeedLoad, MISS_LOAD};
use crate::store::{ClaimRow, Loaded, RECENT_KEEP};
use crate::window::{Micros, Window};
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::collections::VecDeque;
use std::sync::Arc;

/// A claim that changed the board, as the writer committed it.
#[derive(Debug, Clone)]
pub struct Fact {
    pub row: ClaimRow,
    pub name: Arc<str>,
    /// The claim it replaced.
    pub previous: Option<Owner>,
}

/// A (window, block) whose holder, tie or count changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HolderChange {
    pub window: Window,
    pub block: u8,
    pub leader: Leader,
    /// The leader before the step.
    pub was: Leader,
}

/// What one step of the view made visible, for subscribers.
#[derive(Debug, Clone, Default)]
pub struct Change {
    pub claims: Vec<Fact>,
    pub holders: Vec<HolderChange>,
    /// The time of the data after the step.
    pub at: Micros,
}

impl Change {
    /// This step followed by `next`, as one: the claims of both, and each
    /// (window, block) from its leader before this step to its leader after
    /// `next`, if those differ.
    pub fn then(&mut self, next: Change) {
        self.claims.extend(next.claims);
        self.at = self.at.max(next.at);
        // Both lists are sorted by (window, block): merge them.
        let key = |h: &HolderChange| (h.window, h.block);
        let mut merged = Vec::with_capacity(self.holders.len() + next.holders.len());
        let mut later = next.holders.into_iter().peekable();
        for mut h in self.holders.drain(..) {
            while let Some(n) = later.next_if(|n| key(n) < key(&h)) {
                merged.push(n);
            }
            if let Some(n) = later.next_if(|n| key(n) == key(&h)) {
                h.leader = n.leader;
            }
            if h.leader != h.was {
                merged.push(h);
            }
        }
        merged.extend(later);
        self.holders = merged;
    }
}

/// Reads the current claims `after < seq <= upto`, oldest first, at most `limit`.
pub type Load<'a> = dyn FnMut(i64, i64, usize) -> Result<(Vec<ClaimRow>, i64)> + 'a;

/// Index of the recent list among the version counters.
const RECENT: usize = Window::EVERY.len();

pub struct View {
    names: HashMap<PlayerId, Arc<str>>,
    ids: HashMap<Arc<str>, PlayerId>,
    aggregates: Aggregates,
    /// Newest first, one per address, at most `RECENT_KEEP`.
    recent: VecDeque<ClaimRow>,
    in_recent: HashMap<PlayerId, u32>,
    lanes: Vec<Lane>,
    last_seq: i64,
    /// The view is exact as of this time.
    now: Micros,
    /// Per window, when its data last changed; then the recent list's.
    changed_at: [Micros; 7],
    /// Per window, then the recent list: bumped on every change (for caches).
    versions: [u64; 7],
    /// Calls of `apply` so far (a committed batch, or one chunk of it):
    /// rows read ahead before one of them may be void (see `fill`).
    commits: u64,
}

impl View {
    pub fn new(loaded: Loaded) -> View {
        let ids = loaded
            .names
            .iter()
            .map(|(id, n)| (n.clone(), *id))
            .collect();
        let lanes = Window::SLIDING
            .iter()
            .map(|&w| Lane::new(w, loaded.cursors.get(w), loaded.last_seq))
            .collect();
        let mut view = View {
            names: loaded.names,
            ids,
            aggregates: loaded.aggregates,
            recent: loaded.recent.into(),
            in_recent: HashMap::default(),
            lanes,
            last_seq: loaded.last_seq,
            now: loaded.updated_at,
            changed_at: [loaded.updated_at; 7],
            versions: [0; 7],
            commits: 0,
        };
        view.count_recent();
        view
    }

    /// Takes the place of `old` (a reload): every version moves on, so that
    /// nothing rendered from `old` is taken for this view's.
    pub fn succeed(&mut self, old: &View) {
        for (v, o) in self.versions.iter_mut().zip(old.versions) {
            *v = o + 1;
        }
        self.commits = old.commits + 1;
    }

    pub fn aggregates(&self) -> &Aggregates {
        &self.aggregates
    }

    pub fn recent(&self) -> impl Iterator<Item = &ClaimRow> {
        self.recent.iter()
    }

    pub fn name(&self, id: PlayerId) -> &str {
        self.names.get(&id).map_or("?", |n| n)
    }

    /// The name of `id`, shared (a rendering may keep it past the view's lock).
    pub fn shared_name(&self, id: PlayerId) -> Arc<str> {
        self.names
            .get(&id)
            .cloned()
            .unwrap_or_else(|| Arc::from("?"))
    }

    pub fn id(&self, name: &str) -> Option<PlayerId> {
        self.ids.get(name).copied()
    }

    /// Players in memory.
    pub fn live_players(&self) -> usize {
        self.names.len()
    }

    pub fn now(&self) -> Micros {
        self.now
    }

    pub fn last_seq(&self) -> i64 {
        self.last_seq
    }

    pub fn commits(&self) -> u64 {
        self.commits
    }

    /// When `window`'s data last changed (the recent list's for `None`).
    pub fn changed_at(&self, window: Option<Window>) -> Micros {
        self.changed_at[window.map_or(RECENT, Window::index)]
    }

    /// A counter that moves whenever `window`'s data (or the recent list's) changes.
    pub fn version(&self, window: Option<Window>) -> u64 {
        self.versions[window.map_or(RECENT, Window::index)]
    }

    /// The windows' cursors as the view has slid them.
    pub fn cursors(&self) -> Cursors {
        let mut c = Cursors::default();
        for lane in &self.lanes {
            c.set(lane.window, lane.cursor);
        }
        c
    }

    /// When the view next has to slide (or read ahead to know).
    pub fn due(&self) -> Micros {
        self.lanes
            .iter()
            .map(Lane::due)
            .min()
            .unwrap_or(Micros::MAX)
    }

    /// When `window` next has to slide; never for a window that does not
    /// slide (`All`).
    pub fn due_of(&self, window: Window) -> Micros {
        self.lanes
            .iter()
            .filter(|l| l.window == window)
            .map(Lane::due)
            .min()
            .unwrap_or(Micros::MAX)
    }

    /// Slides every window up to `now`, reading claims through `load` when a
    /// lane runs dry. If a read fails, that lane stays where it got to (still
    /// consistent, and due at once) and the error comes back with the change.
    pub fn advance(&mut self, now: Micros, load: &mut Load<'_>) -> (Change, Option<Error>) {
        let now = now.max(self.now);
        let change = self.slide_lanes(now, None, load);
        self.now = now;
        change
    }

    /// Slides `window` alone up to `now`: what a read of that window needs.
    /// Each window's lane, counts and cursor stand on their own, so one may
    /// run ahead of the others; `now()` stays where every window has been
    /// slid to.
    pub fn advance_window(
        &mut self,
        window: Window,
        now: Micros,
        load: &mut Load<'_>,
    ) -> (Change, Option<Error>) {
        self.slide_lanes(now.max(self.now), Some(window), load)
    }

    /// Slides the lanes of `only` (every lane for `None`) up to `now`.
    fn slide_lanes(
        &mut self,
        now: Micros,
        only: Option<Window>,
        load: &mut Load<'_>,
    ) -> (Change, Option<Error>) {
        let mut deltas = Deltas::default();
        let mut popped = Vec::new();
        let mut failed = None;
        for i in 0..self.lanes.len() {
            if only.is_some_and(|w| w != self.lanes[i].window) {
                continue;
            }
            popped.clear();
            while self.lanes[i].pop_due(now, &mut popped) == Err(NeedLoad) {
                let lane = &self.lanes[i];
                match load(lane.loaded, self.last_seq, MISS_LOAD + 1) {
                    Ok((rows, newest)) => {
                        self.lanes[i].fill(rows, MISS_LOAD, self.last_seq, newest)
                    }
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            let w = self.lanes[i].window;
            let length = w.length().unwrap_or(0);
            for e in &popped {
                claim::expire(&mut deltas, w, e.block, e.player);
                let at = &mut self.changed_at[w.index()];
                *at = (*at).max(e.at + length);
            }
            if !popped.is_empty() {
                self.versions[w.index()] += 1;
            }
        }
        let holders = self.apply_deltas(&deltas);
        let at = self.changed_at[..RECENT]
            .iter()
            .copied()
            .max()
            .unwrap_or(now);
        let change = Change {
            claims: Vec::new(),
            holders,
            at,
        };
        (change, failed)
    }

    /// Takes committed claims made at `now`: a batch, or a chunk of one in
    /// commit order. The caller has advanced the view to `now` first, as the
    /// writer expired before it claimed.
    pub fn apply(&mut self, facts: Vec<Fact>, now: Micros) -> Change {
        self.commits += 1;
        if facts.is_empty() {
            return Change::default();
        }
        self.now = self.now.max(now);
        let cursors = self.cursors();
        let mut deltas = Deltas::default();
        let mut losers = Vec::new();
        for f in &facts {
            let block = f.row.block();
            claim::claim(
                &mut deltas,
                &cursors,
                block,
                f.previous.as_ref(),
                f.row.player,
            );
            if let Some(prev) = &f.previous {
                for lane in &mut self.lanes {
                    // The cursor says it lapsed, but the lane never saw it.
                    if lane.missed(prev.seq, f.row.seq) {
                        claim::expire(&mut deltas, lane.window, block, prev.player);
                    }
                    lane.remove(prev.seq);
                }
                losers.push(prev.player);
            }
            for lane in &mut self.lanes {
                lane.append(Entry::from(&f.row), self.last_seq);
            }
            self.last_seq = f.row.seq;
            for lane in &mut self.lanes {
                lane.caught_up(self.last_seq);
            }
            if !self.ids.contains_key(&f.name) {
                self.ids.insert(f.name.clone(), f.row.player);
                self.names.insert(f.row.player, f.name.clone());
            }
        }
        let holders = self.apply_deltas(&deltas);
        losers.extend(self.take_recent(&facts));
        self.evict(losers);
        self.changed_at.iter_mut().for_each(|t| *t = (*t).max(now));
        self.versions.iter_mut().for_each(|v| *v += 1);
        Change {
            claims: facts,
            holders,
            at: now,
        }
    }

    /// What a lane should read next to stay ahead of `now` by `ahead`, or
    /// to hold `low_water` claims: (lane, after, upto).
    pub fn wants_more(
        &self,
        now: Micros,
        ahead: Micros,
        low_water: usize,
    ) -> Option<(usize, i64, i64)> {
        self.lanes
            .iter()
            .position(|l| l.wants_more(now, ahead, low_water))
            .map(|i| (i, self.lanes[i].loaded, self.last_seq))
    }

    /// Takes rows read ahead for lane `i` after `after`, read while the view
    /// was at `commits`: discarded when a batch came in since (it may have
    /// replaced some of them) or the lane moved.
    pub fn fill(
        &mut self,
        i: usize,
        after: i64,
        commits: u64,
        read: (Vec<ClaimRow>, i64),
        limit: usize,
    ) {
        if self.commits == commits && self.lanes[i].loaded == after {
            self.lanes[i].fill(read.0, limit, self.last_seq, read.1);
        }
    }

    /// Applies count changes and says which (window, block) leaders changed.
    fn apply_deltas(&mut self, deltas: &Deltas) -> Vec<HolderChange> {
        if deltas.is_empty() {
            return Vec::new();
        }
        // The windows whose counts change in each block: a leader can change
        // nowhere else, and a slide of one window touches one in six.
        let mut touched: HashMap<u8, u8> = HashMap::default();
        for (&(b, _), d) in deltas {
            let windows = touched.entry(b).or_default();
            for w in Window::EVERY.into_iter().filter(|w| d[w.index()] != 0) {
                *windows |= 1 << w.index();
            }
        }
        let before: Vec<_> = touched
            .iter()
            .map(|(&b, &windows)| (b, windows, self.leaders(b, windows)))
            .collect();
        self.aggregates.apply(deltas);
        let mut changes = Vec::new();
        for (b, windows, old) in before {
            let new = self.leaders(b, windows);
            for w in Window::EVERY {
                let i = w.index();
                if let (Some(leader), Some(was)) = (new[i], old[i]) {
                    if leader != was {
                        changes.push(HolderChange {
                            window: w,
                            block: b,
                            leader,
                            was,
                        });
                    }
                }
            }
        }
        changes.sort_by_key(|c| (c.window, c.block));
        changes
    }

    /// The leaders of `block` in the windows set in the mask `windows`.
    fn leaders(&self, block: u8, windows: u8) -> [Option<Leader>; 6] {
        Window::EVERY
            .map(|w| (windows & (1 << w.index()) != 0).then(|| self.aggregates.leader(w, block)))
    }

    /// Puts the batch's claims at the head of the recent list, one row per
    /// address; returns the players whose rows fell off.
    fn take_recent(&mut self, facts: &[Fact]) -> Vec<PlayerId> {
        let mut seen = HashSet::default();
        let fresh: Vec<ClaimRow> = facts
            .iter()
            .rev()
            .map(|f| f.row)
            .filter(|r| seen.insert(r.ip))
            .collect();
        let before: Vec<PlayerId> = self.in_recent.keys().copied().collect();
        let old = std::mem::take(&mut self.recent);
        self.recent = fresh
            .into_iter()
            .chain(old.into_iter().filter(|r| !seen.contains(&r.ip)))
            .take(RECENT_KEEP)
            .collect();
        self.count_recent();
        before
            .into_iter()
            .filter(|p| !self.in_recent.contains_key(p))
            .collect()
    }

    fn count_recent(&mut self) {
        self.in_recent.clear();
        for r in &self.recent {
            *self.in_recent.entry(r.player).or_default() += 1;
        }
    }

    /// Forgets players who own nothing and are not in the recent list.
    fn evict(&mut self, candidates: Vec<PlayerId>) {
        for p in candidates {
            if self.aggregates.total(Window::All, p) == 0 && !self.in_recent.contains_key(&p) {
                if let Some(name) = self.names.remove(&p) {
                    self.ids.remove(&name);
                }
            }
        }
    }

    /// Every block's leader in `window`.
    pub fn leaders_of(&self, window: Window) -> impl Iterator<Item = (u8, Leader)> + '_ {
        (0..BLOCKS).map(move |b| (b as u8, self.aggregates.leader(window, b as u8)))
    }
}
