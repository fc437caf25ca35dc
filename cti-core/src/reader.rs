//! The readers' side of a store: the [`View`] behind a lock, brought up to
//! `now` on read, its lapse schedule read ahead from the database on a
//! connection of its own, renderings cached per version of the data, and the
//! events for subscribers.
//!
//! A read never sends anything to the writer and never takes a lock the
//! writer holds across a commit: the view's lock is held by the publisher
//! only while it applies a batch that is already committed.

use crate::error::Result;
use crate::schedule::REFILL_LOAD;
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

/// What a rendering is of: kind, window index, and a parameter (a limit).
pub type CacheKey = (u8, u8, u32);

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
    cache: Mutex<HashMap<CacheKey, (u64, Arc<str>)>>,
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
        self.follow_writer();
        let now = self.clock.now();
        if self.due.load(Ordering::Acquire) <= now {
            self.slide(now);
        }
        self.view.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Slides the windows up to `now`.
    pub fn slide(&self, now: Micros) {
        let mut view = self.write();
        self.advance(&mut view, now);
    }

    fn advance(&self, view: &mut View, now: Micros) {
        let db = lock(&self.db);
        let (change, failed) = view.advance(now, &mut |after, upto, limit| {
            db.current_between(after, upto, limit)
        });
        drop(db);
        if failed.is_some() {
            self.load_errors.fetch_add(1, Ordering::Relaxed);
        }
        if !change.holders.is_empty() {
            self.notify(view, "slide", &change);
        }
        self.due.store(view.due(), Ordering::Release);
    }

    /// Takes a committed batch: the windows slide to its time first, as the
    /// writer expired before it claimed.
    pub fn publish(&self, facts: Vec<Fact>, now: Micros) {
        let mut view = self.write();
        self.advance(&mut view, now);
        let change = view.apply(facts, now);
        if !change.claims.is_empty() || !change.holders.is_empty() {
            self.notify(&view, "commit", &change);
        }
        self.due.store(view.due(), Ordering::Release);
    }

    /// Reads lanes ahead of need, without holding the view's lock while the
    /// database is read (a batch published meanwhile makes the rows void).
    pub fn read_ahead(&self) {
        for _ in 0..8 {
            let now = self.clock.now();
            let wanted = {
                let view = self.view.read().unwrap_or_else(|p| p.into_inner());
                view.wants_more(now, READ_AHEAD)
                    .map(|w| (w, view.commits()))
            };
            let Some(((lane, after, upto), commits)) = wanted else {
                return;
            };
            let rows = lock(&self.db).current_between(after, upto, REFILL_LOAD + 1);
            let Ok(rows) = rows else {
                self.load_errors.fetch_add(1, Ordering::Relaxed);
                return;
            };
            let mut view = self.write();
            view.fill(lane, after, commits, rows, REFILL_LOAD);
            self.due.store(view.due(), Ordering::Release);
        }
    }

    /// Between batches: reads ahead, and slides when due, so that
    /// subscribers hear of holders that change by time alone.
    pub fn tick(&self) {
        self.read_ahead();
        let now = self.clock.now();
        if self.due() <= now {
            self.slide(now);
        }
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
        self.advance(&mut view, now);
    }

    /// A rendering of the view, made once per version of what it shows.
    pub fn cached(
        &self,
        key: CacheKey,
        window: Option<Window>,
        render: impl FnOnce(&View) -> String,
    ) -> Arc<str> {
        let view = self.read();
        let version = view.version(window);
        if let Some((v, text)) = lock(&self.cache).get(&key) {
            if *v == version {
                return text.clone();
            }
        }
        let text: Arc<str> = render(&view).into();
        lock(&self.cache).insert(key, (version, text.clone()));
        text
    }

    /// Runs `f` on the reading connection.
    pub fn with_db<T>(&self, f: impl FnOnce(&Db) -> T) -> T {
        f(&lock(&self.db))
    }
}
