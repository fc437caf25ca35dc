//! The readers' side of a store: the [`View`] behind a lock, brought up to
//! `now` on read, its lapse schedule read ahead from the database on a
//! connection of its own, renderings cached per version of the data, and the
//! events for subscribers.
//!
//! A read never sends anything to the writer and never takes a lock the
//! writer holds across a commit: the view's lock is held by the publisher
//! only while it applies a batch that is already committed. Nobody reads the
//! database while holding the view's lock either: what the lanes need is read
//! first, and the lock is taken to slide once it is in memory.

use crate::error::Result;
use crate::schedule::{LOW_WATER, REFILL_LOAD};
use crate::store::{Db, Loaded};
use crate::subscribe::{Subscribers, Subscription};
use crate::view::{Change, Fact, View};
use crate::window::{Clock, Micros, Window};
use rustc_hash::FxHashMap as HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

/// How far ahead of `now` the lanes are read from the database.
pub const READ_AHEAD: Micros = 10 * 60 * 1_000_000;
/// How often a read-only handle looks for the writer's commits.
pub const FOLLOW_EVERY: Duration = Duration::from_millis(250);

/// Claims of a batch the publisher applies under one hold of the view's
/// lock (see [`Reader::publish`]). Measured in the year bench (28 days,
/// 300,000 players, two runs each; board reads over 1 ms): 8 claims, 32 and
/// 29; 16, 13 and 11; 32, 14 and 9; 64, 14 and 11. So 8 is worse, and 16
/// to 64 are the same within the spread of the runs.
const PUBLISH_CHUNK: usize = 32;

/// What a rendering is of: kind, window index, and a parameter (a limit).
pub type CacheKey = (u8, u8, u32);

/// Renderings kept at most. A query's parameter comes from clients (the rows
/// of a ranking, the length of the recent list), and each value is a key of
/// its own: without a bound, `/api/ranks?limit=N` for N = 1, 2, 3, ... kept a
/// copy of the whole ranking per N. The board's own queries are about 30.
pub const CACHED_MAX: usize = 64;

/// The cached renderings: the newest version of each, the least recently
/// used dropped first once [`CACHED_MAX`] are held.
#[derive(Default)]
struct Renderings {
    entries: HashMap<CacheKey, Rendering>,
    /// Counts lookups, to tell which rendering was used last.
    tick: u64,
}

struct Rendering {
    version: u64,
    text: Arc<str>,
    used: u64,
}

impl Renderings {
    /// The rendering of `key` at `version`, if it is cached.
    fn get(&mut self, key: &CacheKey, version: u64) -> Option<Arc<str>> {
        self.tick += 1;
        let r = self.entries.get_mut(key).filter(|r| r.version == version)?;
        r.used = self.tick;
        Some(r.text.clone())
    }

    /// Keeps `text` unless a newer version is cached (renderings may finish
    /// out of order).
    fn put(&mut self, key: CacheKey, version: u64, text: Arc<str>) {
        if self.entries.get(&key).is_some_and(|r| r.version >= version) {
            return;
        }
        if !self.entries.contains_key(&key) && self.entries.len() >= CACHED_MAX {
            let oldest = self.entries.iter().min_by_key(|(_, r)| r.used);
            if let Some(&lru) = oldest.map(|(k, _)| k) {
                self.entries.remove(&lru);
            }
        }
        self.tick += 1;
        let used = self.tick;
        self.entries.insert(
            key,
            Rendering {
                version,
                text,
                used,
            },
        );
    }
}

pub struct Reader {
    view: RwLock<View>,
    /// `view.due()`, readable without the lock.
    due: AtomicI64,
    db: Mutex<Db>,
    clock: Arc<dyn Clock>,
    pub subscribers: Arc<Subscribers>,
    /// Numbers the events subscribers get.
    events: AtomicU64,
    /// For a read-only handle: the writer's commits it has seen.
    follow: Option<Mutex<(i64, Instant)>>,
    cache: Mutex<Renderings>,
    pub load_errors: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Reader {
    /// `db` is a connection for reading only; `follow` makes this the view
    /// of a read-only handle, which reloads when another process commits.
    pub fn new(db: Db, loaded: Loaded, clock: Arc<dyn Clock>, follow: bool) -> Result<Reader> {
        let follow = if follow {
            Some(Mutex::new((db.data_version()?, Instant::now())))
        } else {
            None
        };
        let reader = Reader {
            view: RwLock::new(View::new(loaded)),
            due: AtomicI64::new(Micros::MIN),
            db: Mutex::new(db),
            clock,
            subscribers: Arc::default(),
            events: AtomicU64::new(0),
            follow,
            cache: Mutex::default(),
            load_errors: AtomicU64::new(0),
        };
        reader.slide(reader.clock.now());
        Ok(reader)
    }

    fn write(&self) -> RwLockWriteGuard<'_, View> {
        self.view.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The view as of now.
    pub fn read(&self) -> RwLockReadGuard<'_, View> {
        self.read_window(None)
    }

    /// The view with `window` as of now (every window for `None`): a read
    /// of one window slides that window alone, and leaves the others'
    /// lapses to the publisher.
    pub fn read_window(&self, window: Option<Window>) -> RwLockReadGuard<'_, View> {
        self.follow_writer();
        let now = self.clock.now();
        let due = |w: Window| {
            self.view
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .due_of(w)
        };
        if self.due.load(Ordering::Acquire) <= now && window.is_none_or(|w| due(w) <= now) {
            self.load(now, 0, 0);
            self.advance(&mut self.write(), now, window);
        }
        self.view.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The view as last slid, for what sliding does not change: which names
    /// are live (players leave only when a batch is applied). A claim asks
    /// this, so that claims never take the view's lock exclusively.
    pub fn peek(&self) -> RwLockReadGuard<'_, View> {
        self.view.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Slides the windows up to `now`.
    pub fn slide(&self, now: Micros) {
        self.load(now, 0, 0);
        let mut view = self.write();
        self.advance(&mut view, now, None);
    }

    /// Slides `view` (only `only`'s window, if given) to `now`. The
    /// database is read under the view's lock only when a lane runs dry all
    /// the same (rows read beforehand were voided by a batch published
    /// meanwhile).
    fn advance(&self, view: &mut View, now: Micros, only: Option<Window>) {
        let mut load = |after, upto, limit| lock(&self.db).current_between(after, upto, limit);
        let (change, failed) = match only {
            None => view.advance(now, &mut load),
            Some(window) => view.advance_window(window, now, &mut load),
        };
        if failed.is_some() {
            self.load_errors.fetch_add(1, Ordering::Relaxed);
        }
        if !change.holders.is_empty() {
            self.notify(view, "slide", &change);
        }
        self.due.store(view.due(), Ordering::Release);
    }

    /// Takes a committed batch: the windows slide to its time first, as the
    /// writer expired before it claimed. The claims go in [`PUBLISH_CHUNK`]
    /// at a time, and the lock is let go (and the CPU offered) between two
    /// chunks, so that a read waits for a chunk, not for a whole batch
    /// (about 1 ms with 300,000 players). Such a read sees the claims in
    /// commit order up to a chunk's last; none of the batch's claims is
    /// acknowledged before all of it is in, and subscribers hear of the
    /// batch once, with the holders as they changed across all of it.
    pub fn publish(&self, facts: Vec<Fact>, now: Micros) {
        self.load(now, 0, 0);
        let mut view = self.write();
        self.advance(&mut view, now, None);
        let mut facts = facts.into_iter().peekable();
        let mut change = Change::default();
        loop {
            let chunk: Vec<Fact> = facts.by_ref().take(PUBLISH_CHUNK).collect();
            change.then(view.apply(chunk, now));
            self.due.store(view.due(), Ordering::Release);
            if facts.peek().is_none() {
                break;
            }
            drop(view);
            std::thread::yield_now();
            view = self.write();
        }
        if !change.claims.is_empty() || !change.holders.is_empty() {
            self.notify(&view, "commit", &change);
        }
    }

    /// Reads lanes ahead of need (by time, and by count: see [`LOW_WATER`]).
    pub fn read_ahead(&self) {
        self.load(self.clock.now(), READ_AHEAD, LOW_WATER);
    }

    /// Reads what the lanes need to slide to `now + ahead` (or to hold
    /// `low_water` claims), without holding the view's lock while the
    /// database is read (a batch published meanwhile makes the rows void).
    fn load(&self, now: Micros, ahead: Micros, low_water: usize) {
        for _ in 0..8 {
            let wanted = {
                let view = self.view.read().unwrap_or_else(|p| p.into_inner());
                view.wants_more(now, ahead, low_water)
                    .map(|w| (w, view.commits()))
            };
            let Some(((lane, after, upto), commits)) = wanted else {
                return;
            };
            let read = lock(&self.db).current_between(after, upto, REFILL_LOAD + 1);
            let Ok(read) = read else {
                self.load_errors.fetch_add(1, Ordering::Relaxed);
                return;
            };
            let mut view = self.write();
            view.fill(lane, after, commits, read, REFILL_LOAD);
            self.due.store(view.due(), Ordering::Release);
        }
    }

    /// Between batches: reads ahead, and slides when due, so that
    /// subscribers hear of holders that change by time alone.
    pub fn tick(&self) {
        self.read_ahead();
        self.slide_if_due();
    }

    /// Slides when some claim is due to leave a window.
    pub fn slide_if_due(&self) {
        let now = self.clock.now();
        if self.due() <= now {
            self.slide(now);
        }
    }

    /// Time until the view next slides, by the store's clock.
    pub fn until_due(&self) -> Duration {
        let ahead = self.due().saturating_sub(self.clock.now());
        Duration::from_micros(ahead.max(0) as u64)
    }

    /// When the view next slides.
    pub fn due(&self) -> Micros {
        self.due.load(Ordering::Acquire)
    }

    fn notify(&self, view: &View, kind: &str, change: &Change) {
        if self.subscribers.any() {
            let n = self.events.fetch_add(1, Ordering::Relaxed) + 1;
            self.subscribers
                .send(&crate::render::event(view, kind, n, change));
        }
    }

    pub fn subscribe(&self, callback: crate::subscribe::Callback) -> std::io::Result<Subscription> {
        self.subscribers.add(callback)
    }

    /// A read-only handle reloads its view when another connection has
    /// committed (checked at most every `FOLLOW_EVERY`).
    fn follow_writer(&self) {
        let Some(follow) = &self.follow else { return };
        let mut seen = lock(follow);
        if seen.1.elapsed() < FOLLOW_EVERY {
            return;
        }
        seen.1 = Instant::now();
        let db = lock(&self.db);
        let Ok(version) = db.data_version() else {
            return;
        };
        if version == seen.0 {
            return;
        }
        let Ok(loaded) = db.load() else { return };
        drop(db);
        seen.0 = version;
        let mut next = View::new(loaded);
        let mut view = self.write();
        next.succeed(&view);
        *view = next;
        let now = self.clock.now();
        self.advance(&mut view, now, None);
    }

    /// A rendering of the view, made once per version of what it shows.
    /// `take` runs under the view's read lock and `finish` after it is
    /// released, so that a long rendering holds up neither the publisher
    /// nor, behind it, the other readers.
    pub fn cached<T>(
        &self,
        key: CacheKey,
        window: Option<Window>,
        take: impl FnOnce(&View) -> T,
        finish: impl FnOnce(T) -> String,
    ) -> Arc<str> {
        let (version, taken) = {
            let view = self.read_window(window);
            let version = view.version(window);
            if let Some(text) = lock(&self.cache).get(&key, version) {
                return text;
            }
            (version, take(&view))
        };
        let text: Arc<str> = finish(taken).into();
        lock(&self.cache).put(key, version, text.clone());
        text
    }

    /// Runs `f` on the reading connection.
    pub fn with_db<T>(&self, f: impl FnOnce(&Db) -> T) -> T {
        f(&lock(&self.db))
    }
}

#[cfg(test)]
mod tests {
    use super::lock;
    use crate::window::Clock;
    use crate::{Limits, ManualClock, NickLimits, Query, Store, Window};
    use std::sync::{mpsc, Arc};
    use std::time::{Duration, Instant};

    const HOUR: i64 = 3_600_000_000;
    const T0: i64 = 1_700_000_000_000_000;

    /// A store in `dir` on a manual clock at `T0`, with every limit off.
    fn unlimited_store(dir: &tempfile::TempDir) -> (Arc<ManualClock>, Store) {
        let clock = Arc::new(ManualClock::new(T0));
        let store = Store::open_with_clock(&dir.path().join("g.db"), clock.clone()).unwrap();
        store.set_limits(Limits::OFF).unwrap();
        store.set_nick_limits(NickLimits::OFF).unwrap();
        (clock, store)
    }

    /// A client choosing a new limit on every request must not grow the
    /// store's memory: the cache keeps at most `CACHED_MAX` renderings, and
    /// the board's queries stay cached meanwhile.
    #[test]
    fn renderings_cached_are_bounded_whatever_limits_clients_ask_for() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(T0));
        let store = Store::open_with_clock(&dir.path().join("g.db"), clock).unwrap();
        store.set_limits(Limits::OFF).unwrap();
        store.set_nick_limits(NickLimits::OFF).unwrap();
        for i in 0..30 {
            store
                .claim(&format!("71.0.0.{i}"), &format!("p{}", i % 12))
                .unwrap();
        }
        let board = Query::Blocks(Window::All);
        let first = store.json(board).unwrap();
        for limit in 0..1000 {
            store.json(Query::Ranks(Window::All, limit)).unwrap();
            if limit % 10 == 0 {
                // The board is read meanwhile, as a server reads it.
                assert!(Arc::ptr_eq(&first, &store.json(board).unwrap()));
            }
        }
        let reader = store.inner().unwrap().reader.clone();
        assert_eq!(lock(&reader.cache).entries.len(), super::CACHED_MAX);
        // An evicted rendering is made again, and equal.
        let again = store.json(Query::Ranks(Window::All, 0)).unwrap();
        assert_eq!(&*again, &*store.json(Query::Ranks(Window::All, 0)).unwrap());
        assert!(Arc::ptr_eq(&first, &store.json(board).unwrap()));
    }

    /// The store's clock may run faster than the wall clock (libfaketime,
    /// the year bench). While claims flow, the publisher slides the view
    /// within milliseconds of wall time all the same, so that a read finds
    /// little to apply: it must not sleep until the next lapse as if store
    /// time were wall time (up to its 250 ms tick).
    #[test]
    fn while_claims_flow_the_view_slides_whatever_the_clock_rate() {
        let dir = tempfile::tempdir().unwrap();
        let (clock, store) = unlimited_store(&dir);
        store.claim("70.0.0.1", "early").unwrap();
        clock.advance(HOUR / 2);
        store.claim("70.0.0.2", "later").unwrap();
        // The publisher goes back to waiting, half an hour of store time
        // before the first claim leaves the hour.
        std::thread::sleep(Duration::from_millis(20));
        let reader = store.inner().unwrap().reader.clone();
        // Store time passes that hour between two batches, as a fast clock does.
        clock.advance(HOUR / 2 + 1);
        assert!(
            reader.due() <= clock.now(),
            "a claim is due to leave the hour"
        );
        let deadline = Instant::now() + Duration::from_millis(200);
        while reader.due() <= clock.now() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(
            reader.due() > clock.now(),
            "the view was not slid within 200 ms of wall time (the tick is 250)"
        );
        assert_eq!(store.blocks(Window::Hour).unwrap().blocks[70].total, 1);
    }

    /// The reading connection is also what the publisher reads the lapse
    /// schedule ahead on, for tens of milliseconds at a time under load. A
    /// slide whose claims are all in memory must not wait for it.
    #[test]
    fn a_slide_from_memory_does_not_wait_for_the_reading_connection() {
        let dir = tempfile::tempdir().unwrap();
        let (clock, store) = unlimited_store(&dir);
        for i in 1..=3 {
            store.claim(&format!("70.0.0.{i}"), "early").unwrap();
        }
        assert_eq!(store.blocks(Window::Hour).unwrap().blocks[70].total, 3);

        // Someone holds the reading connection for a long time.
        let reader = store.inner().unwrap().reader.clone();
        let (held_tx, held) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            reader.with_db(|_| {
                held_tx.send(()).unwrap();
                let _ = released.recv_timeout(Duration::from_secs(30));
            })
        });
        held.recv_timeout(Duration::from_secs(10)).unwrap();

        // The claims leave the hour: the view slides from what it holds.
        clock.set(T0 + HOUR + 1);
        let store = Arc::new(store);
        let (read_tx, read) = mpsc::channel();
        let s = store.clone();
        std::thread::spawn(move || {
            let _ = read_tx.send(s.blocks(Window::Hour).map(|b| b.blocks[70].total));
        });
        let answer = read.recv_timeout(Duration::from_secs(5));
        release.send(()).unwrap();
        holder.join().unwrap();
        assert_eq!(
            answer
                .expect("the read waited for the reading connection")
                .unwrap(),
            0,
            "every claim left the hour"
        );
        assert_eq!(store.blocks(Window::All).unwrap().blocks[70].total, 3);
    }
}
