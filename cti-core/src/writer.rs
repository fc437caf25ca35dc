//! Group commit: one thread owns the write connection. Claims queue up while a
//! commit is in flight and the next transaction takes all of them, so many
//! concurrent claims cost one fsync. Nobody is answered before the commit that
//! holds their claim has returned and the readers can see it.
//!
//! The queue is bounded by count ([`QUEUE`]) and by age ([`MAX_WAIT`]): when
//! the disk cannot keep up, claims fail fast with `Unavailable` instead of
//! piling up without limit.

use crate::aggregates::{Aggregates, Deltas, PlayerId};
use crate::claim::{self, Cursors};
use crate::error::{Error, Result};
use crate::reader::Reader;
use crate::store::{Batch, ClaimRow, Db, Holder, Loaded};
use crate::view::Fact;
use crate::window::{Clock, Micros, Window};
use rustc_hash::FxHashMap as HashMap;
use std::cell::Cell;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most claims in one transaction; more wait for the next one.
const MAX_BATCH: usize = 16_384;
/// Most jobs waiting for the writer; more are refused at once.
pub const QUEUE: usize = 65_536;
/// A claim that waited this long for its transaction fails instead.
pub const MAX_WAIT: Duration = Duration::from_secs(5);
/// Longest idle sleep when no window is about to expire anything.
const IDLE: Duration = Duration::from_secs(60);
/// Least time between two commits that only expire claims: the readers slide
/// the windows themselves, so the writer's own counts (and the snapshot
/// taken from them) may lag by this much.
const EXPIRE_EVERY: Micros = 1_000_000;
/// How often the aggregates are written (see `store`): what opening replays
/// after a crash is at most this much of claims and lapses.
const SNAPSHOT_EVERY: Duration = Duration::from_secs(1);
/// Changed (block, player) pairs that make a snapshot due sooner, so that
/// one snapshot's transaction stays short whatever the claim rate.
const SNAPSHOT_PAIRS: usize = 65_536;

/// A committed claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub ip: Ipv4Addr,
    pub name: Arc<str>,
    pub at: Micros,
    pub seq: i64,
}

pub type ClaimDone = Box<dyn FnOnce(Result<Claimed>) + Send>;
pub type Done = Box<dyn FnOnce(Result<()>) + Send>;

pub enum Job {
    Claim {
        ip: Ipv4Addr,
        nick: String,
        done: ClaimDone,
        queued: Instant,
    },
    /// Commit the windows' expiry up to now; answers whether the store can commit.
    Sync(Done),
    /// Recount the aggregates from the claims and compare.
    Check(Done),
}

/// What the writer tells the rest of the store about itself.
#[derive(Debug)]
pub struct WriterState {
    /// Whether the last transaction committed.
    pub writable: AtomicBool,
    /// Another program changed the database behind the writer's back.
    pub diverged: AtomicBool,
    /// The writer thread is running.
    pub alive: AtomicBool,
    /// Jobs sent and not yet taken.
    pub queued: AtomicUsize,
    /// When the running transaction began (µs on the store's clock), 0 if none.
    pub busy_since: AtomicI64,
}

impl Default for WriterState {
    fn default() -> Self {
        WriterState {
            writable: AtomicBool::new(true),
            diverged: AtomicBool::new(false),
            alive: AtomicBool::new(true),
            queued: AtomicUsize::new(0),
            busy_since: AtomicI64::new(0),
        }
    }
}

thread_local! {
    static ON_WRITER: Cell<bool> = const { Cell::new(false) };
}

/// True on the writer and publisher threads (where callbacks run), which must
/// not wait for themselves.
pub fn on_writer_thread() -> bool {
    ON_WRITER.with(Cell::get)
}

pub struct Writer {
    db: Db,
    clock: Arc<dyn Clock>,
    reader: Arc<Reader>,
    state: Arc<WriterState>,
    stats: Arc<crate::stats::Stats>,
    staged: Staged,
    /// When the next claim leaves a window, as of the last commit.
    due: Micros,
    last_expiry: Micros,
    /// `PRAGMA data_version` after our own last commit.
    data_version: i64,
    publisher: Publisher,
}

/// The writer's own state, as of its last commit (persisted).
struct Staged {
    /// Live players by name (others are looked up in the database), and
    /// the same the other way round.
    ids: HashMap<Arc<str>, PlayerId>,
    names: HashMap<PlayerId, Arc<str>>,
    aggregates: Aggregates,
    cursors: Cursors,
    last_seq: i64,
    last_at: Micros,
    snapshot: Snapshot,
}

/// How far the stored aggregates are behind the writer's.
struct Snapshot {
    /// The newest claim they count.
    seq: i64,
    taken: Instant,
    /// (block, player) pairs changed since, in any window, with their stored
    /// rows (`None`: not known, write them all).
    pairs: HashMap<(u8, PlayerId), Option<Rows>>,
    /// The same for the holders of the blocks changed since.
    blocks: HashMap<u8, Option<[Option<Holder>; 6]>>,
}

/// A pair's stored row: its count in each window.
type Rows = [u32; 6];

fn rows(aggregates: &Aggregates, block: u8, player: PlayerId) -> Rows {
    aggregates.block(block).counts(player)
}

impl Snapshot {
    fn due(&self) -> bool {
        self.taken.elapsed() >= SNAPSHOT_EVERY || self.pairs.len() >= SNAPSHOT_PAIRS
    }

    /// Time until the next snapshot is due, if anything changed.
    fn wait(&self) -> Option<Duration> {
        (!self.pairs.is_empty()).then(|| SNAPSHOT_EVERY.saturating_sub(self.taken.elapsed()))
    }

    /// Before `deltas` are applied: keeps the stored rows of the pairs and
    /// blocks they change for the first time since the snapshot.
    fn note(&mut self, aggregates: &Aggregates, deltas: &Deltas) {
        for &(b, p) in deltas.keys() {
            self.pairs
                .entry((b, p))
                .or_insert_with(|| Some(rows(aggregates, b, p)));
            self.blocks
                .entry(b)
                .or_insert_with(|| Some(holders(aggregates, b)));
        }
    }

    /// A snapshot counting every claim up to `seq` was committed.
    fn taken(&mut self, seq: i64) {
        self.seq = seq;
        self.taken = Instant::now();
        self.pairs.clear();
        self.blocks.clear();
    }
}

/// A committed batch on its way to readers and callers.
struct Publication {
    facts: Vec<Fact>,
    now: Micros,
    replies: Vec<(ClaimDone, Claimed)>,
    waiters: Vec<Done>,
}

impl Writer {
    pub fn new(
        db: Db,
        loaded: &Loaded,
        clock: Arc<dyn Clock>,
        reader: Arc<Reader>,
        stats: Arc<crate::stats::Stats>,
    ) -> Result<(Writer, Arc<WriterState>)> {
        let due = db.next_expiry(&loaded.cursors)?.unwrap_or(i64::MAX);
        let names: HashMap<PlayerId, Arc<str>> = loaded
            .names
            .iter()
            .filter(|(id, _)| loaded.aggregates.total(Window::All, **id) > 0)
            .map(|(id, n)| (*id, n.clone()))
            .collect();
        let ids = names.iter().map(|(id, n)| (n.clone(), *id)).collect();
        let state = Arc::new(WriterState::default());
        let publisher = Publisher::start(reader.clone()).map_err(|e| Error::Open {
            path: "(threads)".into(),
            message: e.to_string(),
        })?;
        let writer = Writer {
            data_version: db.data_version()?,
            db,
            clock,
            reader,
            state: state.clone(),
            stats,
            staged: Staged {
                ids,
                names,
                aggregates: loaded.aggregates.clone(),
                cursors: loaded.cursors,
                last_seq: loaded.last_seq,
                last_at: loaded.updated_at,
                snapshot: Snapshot {
                    seq: loaded.snapshot_seq,
                    taken: Instant::now(),
                    pairs: loaded.replayed.iter().map(|&k| (k, None)).collect(),
                    blocks: loaded.replayed.iter().map(|&(b, _)| (b, None)).collect(),
                },
            },
            due,
            last_expiry: Micros::MIN,
            publisher,
        };
        Ok((writer, state))
    }

    /// Runs until every sender is gone, then finishes what is queued.
    pub fn run(mut self, jobs: Receiver<Job>) {
        ON_WRITER.with(|c| c.set(true));
        loop {
            let wait = self.until_due();
            let first = match jobs.recv_timeout(wait) {
                Ok(job) => Some(job),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut batch: Vec<Job> = first.into_iter().collect();
            while batch.len() < MAX_BATCH {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.state.queued.fetch_sub(batch.len(), Ordering::AcqRel);
            if batch.is_empty() && self.until_due() > Duration::ZERO {
                continue;
            }
            self.run_batch(batch);
        }
        // A clean close leaves nothing to replay at the next open.
        if !self.staged.snapshot.pairs.is_empty() {
            let _ = self.guarded_commit(&[], true);
        }
        self.state.alive.store(false, Ordering::Release);
    }

    fn until_due(&self) -> Duration {
        let due = self.due.max(self.last_expiry.saturating_add(EXPIRE_EVERY));
        let left = due.saturating_sub(self.clock.now());
        let expiry = Duration::from_micros(left.max(0) as u64).min(IDLE);
        self.staged
            .snapshot
            .wait()
            .map_or(expiry, |s| s.min(expiry))
    }

    fn run_batch(&mut self, jobs: Vec<Job>) {
        let mut claims = Vec::new();
        let mut replies = Vec::new();
        let mut waiters = Vec::new();
        let mut checks = Vec::new();
        for job in jobs {
            match job {
                Job::Claim { queued, done, .. } if queued.elapsed() > MAX_WAIT => {
                    self.stats.failed(1);
                    done(Err(Error::Unavailable(format!(
                        "the claim waited more than {} s for the disk",
                        MAX_WAIT.as_secs()
                    ))));
                }
                Job::Claim { ip, nick, done, .. } => {
                    claims.push((ip, nick));
                    replies.push(done);
                }
                Job::Sync(done) => waiters.push(done),
                Job::Check(done) => checks.push(done),
            }
        }
        let started = Instant::now();
        // A check compares the stored aggregates with a recount: they are
        // written first.
        let outcome = self.guarded_commit(&claims, !checks.is_empty());
        self.state
            .writable
            .store(outcome.is_ok(), Ordering::Release);
        match outcome {
            Ok((facts, claimed, now)) => {
                self.stats.committed(claims.len(), started.elapsed());
                self.publisher.publish(Publication {
                    facts,
                    now,
                    replies: replies.into_iter().zip(claimed).collect(),
                    waiters,
                });
            }
            Err(e) => {
                self.stats.failed(claims.len());
                replies.into_iter().for_each(|r| r(Err(e.clone())));
                waiters.into_iter().for_each(|w| w(Err(e.clone())));
            }
        }
        if !checks.is_empty() {
            self.publisher.flush();
            let result = crate::check::check(&self.db, &self.staged.aggregates, &self.reader);
            checks.into_iter().for_each(|c| c(result.clone()));
        }
    }

    /// Refuses to commit once another program has changed the database: the
    /// writer's state would no longer describe the file.
    fn guarded_commit(
        &mut self,
        claims: &[(Ipv4Addr, String)],
        snapshot: bool,
    ) -> Result<(Vec<Fact>, Vec<Claimed>, Micros)> {
        if self.state.diverged.load(Ordering::Acquire)
            || self.db.data_version()? != self.data_version
        {
            self.state.diverged.store(true, Ordering::Release);
            return Err(Error::Unavailable(
                "another program changed the database since this store opened it; reopen the store"
                    .into(),
            ));
        }
        let clock_now = self.clock.now();
        self.state.busy_since.store(clock_now, Ordering::Release);
        let result = self.commit(claims, clock_now, snapshot);
        self.state.busy_since.store(0, Ordering::Release);
        if result.is_ok() {
            self.data_version = self.db.data_version()?;
        }
        result
    }

    /// One transaction: expire what slid out of the windows, record the
    /// claims, write the aggregates when a snapshot is due (or `snapshot`
    /// asks for one), and commit.
    fn commit(
        &mut self,
        claims: &[(Ipv4Addr, String)],
        clock_now: Micros,
        snapshot: bool,
    ) -> Result<(Vec<Fact>, Vec<Claimed>, Micros)> {
        // Time never runs backwards in the store, whatever the system clock does.
        let now = clock_now.max(self.staged.last_at);
        let saved = (
            self.staged.cursors,
            self.staged.last_seq,
            self.staged.last_at,
        );
        let mut step = Step::default();
        let staged = &mut self.staged;
        let snapshot = snapshot || staged.snapshot.due();
        match self.db.write(|batch| {
            let claimed = stage(batch, staged, claims, now, &mut step)?;
            if snapshot {
                write_snapshot(batch, staged)?;
            }
            Ok(claimed)
        }) {
            Ok(claimed) => {
                if snapshot {
                    self.staged.snapshot.taken(self.staged.last_seq);
                }
                self.last_expiry = now;
                self.due = self
                    .db
                    .next_expiry(&self.staged.cursors)
                    .ok()
                    .flatten()
                    .unwrap_or(i64::MAX);
                self.forget_dead(&step.facts);
                Ok((step.facts, claimed, now))
            }
            Err(e) => {
                let s = &mut self.staged;
                (s.cursors, s.last_seq, s.last_at) = saved;
                for name in step.new_ids {
                    if let Some(id) = s.ids.remove(&name) {
                        s.names.remove(&id);
                    }
                }
                if let Some(applied) = step.applied {
                    let undo: Deltas = applied
                        .into_iter()
                        .map(|(k, d)| (k, d.map(|x| -x)))
                        .collect();
                    s.aggregates.apply(&undo);
                }
                Err(e)
            }
        }
    }

    /// Players who lost their last address leave the writer's memory.
    fn forget_dead(&mut self, facts: &[Fact]) {
        for prev in facts.iter().filter_map(|f| f.previous) {
            if self.staged.aggregates.total(Window::All, prev.player) == 0 {
                if let Some(name) = self.staged.names.remove(&prev.player) {
                    self.staged.ids.remove(&name);
                }
            }
        }
    }
}

/// What a transaction did so far, to undo it in memory if it fails.
#[derive(Default)]
struct Step {
    facts: Vec<Fact>,
    new_ids: Vec<Arc<str>>,
    applied: Option<Deltas>,
}

/// The claims' transaction: what lapsed by `now`, the claims, the tallies.
fn stage(
    batch: &Batch<'_>,
    s: &mut Staged,
    claims: &[(Ipv4Addr, String)],
    now: Micros,
    step: &mut Step,
) -> Result<Vec<Claimed>> {
    let mut deltas = Deltas::default();
    expire(batch, &mut s.cursors, &mut deltas, now)?;
    let mut claimed = Vec::with_capacity(claims.len());
    for (ip, nick) in claims {
        let ip_u32 = u32::from(*ip);
        let (player, name) = s.player(batch, nick, &mut step.new_ids)?;
        let previous = batch.owner(ip_u32)?;
        if !claim::takes_effect(previous.as_ref(), player, now) {
            let prev = previous.unwrap_or(claim::Owner {
                player,
                seq: 0,
                at: now,
            });
            claimed.push(Claimed {
                ip: *ip,
                name,
                at: prev.at,
                seq: prev.seq,
            });
            continue;
        }
        s.last_seq += 1;
        let row = ClaimRow {
            seq: s.last_seq,
            ip: ip_u32,
            player,
            at: now,
        };
        batch.record(&row, s.snapshot.seq)?;
        claim::claim(
            &mut deltas,
            &s.cursors,
            row.block(),
            previous.as_ref(),
            player,
        );
        claimed.push(Claimed {
            ip: *ip,
            name: name.clone(),
            at: now,
            seq: row.seq,
        });
        step.facts.push(Fact {
            row,
            name,
            previous,
        });
    }
    s.last_at = now;
    s.snapshot.note(&s.aggregates, &deltas);
    s.aggregates.apply(&deltas);
    step.applied = Some(deltas);
    batch.put_meta(now, s.last_seq)?;
    Ok(claimed)
}

impl Staged {
    /// The id of `nick`: live, seen before, or new.
    fn player(
        &mut self,
        batch: &Batch<'_>,
        nick: &str,
        new_ids: &mut Vec<Arc<str>>,
    ) -> Result<(PlayerId, Arc<str>)> {
        if let Some((name, id)) = self.ids.get_key_value(nick) {
            return Ok((*id, name.clone()));
        }
        let id = match batch.player_id(nick)? {
            Some(id) => id,
            None => batch.add_player(nick)?,
        };
        let name: Arc<str> = nick.into();
        self.ids.insert(name.clone(), id);
        self.names.insert(id, name.clone());
        new_ids.push(name.clone());
        Ok((id, name))
    }
}

/// Moves every window's cursor up to `now`, uncounting claims that slid out.
fn expire(
    batch: &Batch<'_>,
    cursors: &mut Cursors,
    deltas: &mut Deltas,
    now: Micros,
) -> Result<()> {
    for w in Window::SLIDING {
        let Some(len) = w.length() else { continue };
        for gone in batch.lapsing(cursors.get(w), now - len)? {
            claim::expire(deltas, w, gone.block(), gone.player);
            cursors.set(w, gone.seq);
        }
    }
    Ok(())
}

/// Writes the aggregates of every pair changed since the last snapshot (its
/// counts in each window), the holders of their blocks, and the window
/// cursors; then marks the snapshot as taken at the newest claim.
fn write_snapshot(batch: &Batch<'_>, s: &Staged) -> Result<()> {
    let aggregates = &s.aggregates;
    // In key order: pairs that share a page of `counts` are written one
    // after the other, not at random (a hash map's order), which cost a
    // page lookup each and half the snapshot's time once the table is big.
    let mut pairs: Vec<_> = s.snapshot.pairs.iter().collect();
    pairs.sort_unstable_by_key(|(&key, _)| key);
    for (&(b, p), stored) in pairs {
        let now = rows(aggregates, b, p);
        if *stored != Some(now) {
            batch.put_counts(b, p, &now)?;
        }
    }
    for (&b, stored) in &s.snapshot.blocks {
        let now = holders(aggregates, b);
        for w in Window::EVERY {
            let i = w.index();
            if stored.is_none_or(|h| h[i] != now[i]) {
                batch.put_holder(w, b, now[i])?;
            }
        }
    }
    batch.put_cursors(&s.cursors)?;
    batch.put_snapshot(s.last_seq)
}

fn holders(aggregates: &Aggregates, block: u8) -> [Option<Holder>; 6] {
    Window::EVERY.map(|w| Holder::of(&aggregates.leader(w, block)))
}

enum Publish {
    Batch(Box<Publication>),
    Flush(std::sync::mpsc::SyncSender<()>),
}

/// Applies committed batches to the readers' view and answers their callers
/// on a second thread, so the writer starts the next transaction at once.
/// One thread, one queue: batches are published in commit order. Between
/// batches it slides the windows when due (so subscribers hear of holders
/// that change by time alone) and reads the lapse schedule ahead.
struct Publisher {
    queue: Option<std::sync::mpsc::Sender<Publish>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Longest sleep of the publisher between two looks at the schedule.
const TICK: Duration = Duration::from_millis(250);

/// Shortest time between two slides the publisher makes on its own. A read
/// applies what lapsed in its window since the last slide before it
/// answers: sliding between batches leaves it at most this much (at
/// thousands of lapses a second, 25 ms between batches is a millisecond of
/// work on the read). In the year bench 1 ms against 5 ms took the weekly
/// p99 of `blocks` hour on a CPU from 0.72 to 0.46 ms (median week), with
/// no loss of claims/s.
const SLIDE_EVERY: Duration = Duration::from_millis(1);

impl Publisher {
    fn start(reader: Arc<Reader>) -> std::io::Result<Publisher> {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("cti-publish".into())
            .spawn(move || {
                ON_WRITER.with(|c| c.set(true));
                let mut ticked = Instant::now();
                let mut slid = Instant::now();
                let mut published = Instant::now();
                loop {
                    let wait = wait_for(&reader, published.elapsed());
                    match rx.recv_timeout(wait) {
                        Ok(Publish::Batch(p)) => {
                            publish(&reader, *p);
                            published = Instant::now();
                            // At a high claim rate the lanes run down between
                            // two ticks; topping them up here keeps the reads
                            // from finding them dry.
                            reader.read_ahead();
                        }
                        Ok(Publish::Flush(done)) => drop(done.send(())),
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                    if ticked.elapsed() >= TICK {
                        reader.tick();
                        (ticked, slid) = (Instant::now(), Instant::now());
                    } else if slid.elapsed() >= SLIDE_EVERY {
                        reader.slide_if_due();
                        slid = Instant::now();
                    }
                }
            })?;
        Ok(Publisher {
            queue: Some(tx),
            thread: Some(thread),
        })
    }

    fn publish(&self, p: Publication) {
        if let Some(q) = &self.queue {
            let _ = q.send(Publish::Batch(Box::new(p)));
        }
    }

    /// Waits until everything sent so far is published.
    fn flush(&self) {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        if let Some(q) = &self.queue {
            if q.send(Publish::Flush(tx)).is_ok() {
                let _ = rx.recv();
            }
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.queue.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How long the publisher may sleep, `since` the last batch it published.
/// While claims flow (a batch within the last [`TICK`]), at most
/// [`SLIDE_EVERY`] whatever the schedule says: the store's clock may run
/// faster than the wall clock (libfaketime, the year bench's simulated
/// time), and then the time until the next lapse, in store time, overstates
/// the wall-clock wait by that factor. The view fell that far behind and
/// the next read slid it: about 12 ms of lapses per read in the year bench
/// instead of at most `SLIDE_EVERY`.
fn wait_for(reader: &Reader, since: Duration) -> Duration {
    if since < TICK {
        SLIDE_EVERY
    } else {
        reader.until_due().clamp(SLIDE_EVERY, TICK)
    }
}

fn publish(reader: &Reader, p: Publication) {
    reader.publish(p.facts, p.now);
    for (reply, claimed) in p.replies {
        reply(Ok(claimed));
    }
    p.waiters.into_iter().for_each(|w| w(Ok(())));
}
