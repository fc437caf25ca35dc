//! The SQLite store: schema, migrations, loading at open, and the statements a
//! batch runs. Claims and the aggregates that count them change in one
//! transaction, so after any crash the tables agree (see [`Db::check`]).
//!
//! Durability: WAL with `synchronous=FULL`. A commit returns only after the
//! WAL is fsynced, so an acknowledged claim survives a process crash and a
//! power loss (given a disk that honours fsync).

use crate::aggregates::{Aggregates, Deltas, Leader, PlayerId, BLOCKS};
use crate::claim::{Cursors, Owner};
use crate::error::{Error, Result};
use crate::window::{Micros, Window};
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use rustc_hash::FxHashMap as HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The newest schema this build writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 1;

/// Page size of new stores. Claims land on random addresses, so each dirties
/// its own page of `claims`; small pages keep the bytes written per claim low.
const PAGE_SIZE: i64 = 1024;

/// The writer's own page cache, in KiB. Kept small on purpose: SQLite 3.40's
/// B-tree balance renumbers pages through the lock-byte page (page 1,048,577 at
/// 1 KiB pages), and while the file is smaller than 1 GiB every commit then
/// walks the whole page-cache hash table (`pcache1TruncateUnsafe`). With
/// 256 MiB of cache that walk took half of the writer's time at 10M claims;
/// pages it misses come from the kernel's page cache instead.
const CACHE_KIB: i64 = 4096;

/// WAL frames before the writer's own auto-checkpoint: 256 Ki pages, about
/// 262 MiB of WAL. Checkpointing seldom lets the kernel write each random
/// `claims` block once for many claims (see [`Checkpointer`]).
const AUTOCHECKPOINT_PAGES: i64 = 262_144;

/// Bytes SQLite puts before each page in the WAL.
const WAL_FRAME_HEADER: i64 = 24;

/// Events kept beyond the longest window, for the recent-claims list.
pub const RECENT_KEEP: i64 = 500;

/// Migrations, indexed by the version they upgrade from.
const MIGRATIONS: &[&str] = &[
    // 0 -> 1
    "CREATE TABLE players (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
     -- The current claim of each address (last claim wins).
     CREATE TABLE claims (ip INTEGER PRIMARY KEY, player INTEGER NOT NULL,
                          claimed_at INTEGER NOT NULL, seq INTEGER NOT NULL);
     -- Every claim in order; kept while a window may still expire it.
     CREATE TABLE events (seq INTEGER PRIMARY KEY, ip INTEGER NOT NULL,
                          player INTEGER NOT NULL, claimed_at INTEGER NOT NULL);
     -- Addresses each player owns per block (the `all` window); no zero rows.
     CREATE TABLE tallies (block INTEGER NOT NULL, player INTEGER NOT NULL, count INTEGER NOT NULL,
                           PRIMARY KEY (block, player)) WITHOUT ROWID;
     -- Per sliding window, the addresses in `tallies` whose claim has left the
     -- window. A fresh claim counts in every window, so it changes only
     -- `tallies`: these rows change when claims slide out or come back.
     CREATE TABLE lapsed (win INTEGER NOT NULL, block INTEGER NOT NULL, player INTEGER NOT NULL,
                          count INTEGER NOT NULL, PRIMARY KEY (win, block, player)) WITHOUT ROWID;
     -- Who holds each (window, block) with claims: a player, or NULL on a tie.
     CREATE TABLE holders (win INTEGER NOT NULL, block INTEGER NOT NULL, player INTEGER,
                           tied INTEGER NOT NULL, PRIMARY KEY (win, block)) WITHOUT ROWID;
     -- Per window, the last event it has expired.
     CREATE TABLE windows (win INTEGER PRIMARY KEY, expired_seq INTEGER NOT NULL);
     INSERT INTO windows VALUES (0,0),(1,0),(2,0),(3,0),(4,0),(5,0);
     CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
     INSERT INTO meta VALUES ('updated_at', 0);",
];

/// One claim in the order it was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub seq: i64,
    pub ip: u32,
    pub player: PlayerId,
    pub at: Micros,
}

/// Everything a store keeps in memory, read at open without scanning claims.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// Player names; player id `n` is `names[n - 1]`.
    pub names: Vec<Arc<str>>,
    pub aggregates: Aggregates,
    pub cursors: Cursors,
    pub last_seq: i64,
    pub last_at: Micros,
    pub updated_at: Micros,
    /// Newest first.
    pub recent: Vec<Event>,
}

pub struct Db {
    conn: Connection,
    path: String,
}

impl Db {
    pub fn open(path: &Path) -> Result<Db> {
        let shown = path.display().to_string();
        let open_err = |e: rusqlite::Error| Error::Open {
            path: shown.clone(),
            message: e.to_string(),
        };
        let conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(open_err)?;
        configure(&conn).map_err(open_err)?;
        let mut db = Db { conn, path: shown };
        db.migrate()?;
        Ok(db)
    }

    fn migrate(&mut self) -> Result<()> {
        let found: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let known = SCHEMA_VERSION;
        if found > known {
            return Err(Error::Schema {
                path: self.path.clone(),
                found,
                known,
            });
        }
        for (from, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Exclusive)?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", from as i64 + 1)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// Reads the in-memory state: players, tallies, cursors, the newest events.
    /// Cost grows with players and tallies, never with the number of claims.
    pub fn load(&self) -> Result<Loaded> {
        let mut loaded = Loaded::default();
        let mut stmt = self
            .conn
            .prepare("SELECT id, name FROM players ORDER BY id")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let id: i64 = row.get(0)?;
            let name: String = row.get(1)?;
            if id != loaded.names.len() as i64 + 1 {
                return Err(Error::Inconsistent(format!(
                    "player ids are not dense at {id}"
                )));
            }
            loaded.names.push(name.into());
        }
        loaded.aggregates = self.load_tallies()?;
        let mut stmt = self.conn.prepare("SELECT win, expired_seq FROM windows")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            loaded.cursors.set(window_of(row.get(0)?)?, row.get(1)?);
        }
        loaded.updated_at =
            self.conn
                .query_row("SELECT value FROM meta WHERE key = 'updated_at'", [], |r| {
                    r.get(0)
                })?;
        loaded.recent = self.newest_events(RECENT_KEEP)?;
        if let Some(last) = loaded.recent.first() {
            loaded.last_seq = last.seq;
            loaded.last_at = last.at;
        }
        Ok(loaded)
    }

    /// Rebuilds every window's tallies: `all` from `tallies`, each sliding
    /// window as `all` less what has lapsed from it.
    fn load_tallies(&self) -> Result<Aggregates> {
        let mut lapsed: HashMap<(usize, u8, PlayerId), u32> = HashMap::default();
        let mut stmt = self
            .conn
            .prepare("SELECT win, block, player, count FROM lapsed")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let w = window_of(row.get(0)?)?.index();
            lapsed.insert((w, row.get(1)?, row.get(2)?), row.get(3)?);
        }
        let mut deltas = Deltas::default();
        let mut stmt = self
            .conn
            .prepare("SELECT block, player, count FROM tallies")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let (block, player, count): (u8, PlayerId, i64) =
                (row.get(0)?, row.get(1)?, row.get(2)?);
            let d = deltas.entry((block, player)).or_default();
            for w in Window::EVERY {
                let gone = lapsed
                    .get(&(w.index(), block, player))
                    .copied()
                    .unwrap_or(0);
                d[w.index()] = count - gone as i64;
            }
        }
        let mut aggregates = Aggregates::default();
        aggregates.apply(&deltas);
        Ok(aggregates)
    }

    fn newest_events(&self, limit: i64) -> Result<Vec<Event>> {
        let mut stmt = self
            .conn
            .prepare("SELECT seq, ip, player, claimed_at FROM events ORDER BY seq DESC LIMIT ?1")?;
        let rows = stmt.query_map([limit], event_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// When the next still-counted claim slides out of some window, if any.
    pub fn next_expiry(&self, cursors: &Cursors) -> Result<Option<Micros>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT claimed_at FROM events WHERE seq > ?1 ORDER BY seq LIMIT 1")?;
        let mut due: Option<Micros> = None;
        for w in Window::SLIDING {
            let at: Option<Micros> = stmt.query_row([cursors.get(w)], |r| r.get(0)).optional()?;
            if let (Some(at), Some(len)) = (at, w.length()) {
                due = Some(due.map_or(at + len, |d| d.min(at + len)));
            }
        }
        Ok(due)
    }

    pub fn begin(&mut self) -> Result<Batch<'_>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        Ok(Batch { tx })
    }

    /// Recounts every window from the `claims` table and compares the result
    /// with the stored tallies and holders, and with `memory` if given.
    pub fn check(&self, memory: Option<&Aggregates>) -> Result<()> {
        let loaded = self.load()?;
        let mut counted = Deltas::default();
        let mut stmt = self.conn.prepare(
            "SELECT ip >> 24, player, count(*) FROM claims WHERE seq > ?1 GROUP BY 1, 2",
        )?;
        for w in Window::EVERY {
            let mut rows = stmt.query([loaded.cursors.get(w)])?;
            while let Some(row) = rows.next()? {
                let (block, player, n): (u8, PlayerId, i64) =
                    (row.get(0)?, row.get(1)?, row.get(2)?);
                counted.entry((block, player)).or_default()[w.index()] = n;
            }
        }
        let mut recount = Aggregates::default();
        recount.apply(&counted);
        compare("stored tallies", &loaded.aggregates, &recount)?;
        if let Some(memory) = memory {
            compare("in-memory tallies", memory, &recount)?;
        }
        let stored = self.stored_holders()?;
        for w in Window::EVERY {
            for b in 0..BLOCKS {
                let expect = Holder::of(&recount.leader(w, b as u8));
                let got = stored.get(&(w, b as u8)).copied();
                if got != expect {
                    return Err(Error::Inconsistent(format!(
                        "holder of block {b} in {}: stored {got:?}, recount {expect:?}",
                        w.name()
                    )));
                }
            }
        }
        Ok(())
    }

    fn stored_holders(&self) -> Result<HashMap<(Window, u8), Holder>> {
        let mut stmt = self
            .conn
            .prepare("SELECT win, block, player, tied FROM holders")?;
        let mut rows = stmt.query([])?;
        let mut out = HashMap::default();
        while let Some(row) = rows.next()? {
            let holder = Holder {
                player: row.get(2)?,
                tied: row.get(3)?,
            };
            out.insert((window_of(row.get(0)?)?, row.get(1)?), holder);
        }
        Ok(out)
    }
}

/// The stored part of a leader: who holds the block, or a tie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holder {
    pub player: Option<PlayerId>,
    pub tied: bool,
}

impl Holder {
    /// `None` for a block without claims in the window (no row).
    pub fn of(l: &Leader) -> Option<Holder> {
        (l.total > 0).then_some(Holder {
            player: l.holder,
            tied: l.tied,
        })
    }
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    // Only takes effect on a new file.
    conn.pragma_update(None, "page_size", PAGE_SIZE)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "journal_mode is {mode}, WAL is required"
        )));
    }
    conn.execute_batch(
        "PRAGMA synchronous = FULL;
         PRAGMA mmap_size = 0;
         PRAGMA temp_store = MEMORY;",
    )?;
    conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
    conn.pragma_update(None, "wal_autocheckpoint", AUTOCHECKPOINT_PAGES)?;
    // A WAL that grew to the auto-checkpoint size (plus the frames of the
    // commit that crossed it) is kept, not truncated, so the next cycle
    // rewrites blocks the file already has.
    conn.pragma_update(
        None,
        "journal_size_limit",
        AUTOCHECKPOINT_PAGES * (PAGE_SIZE + WAL_FRAME_HEADER) * 9 / 8,
    )
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
    }
    Ok(())
}

fn window_of(index: i64) -> rusqlite::Result<Window> {
    Window::from_index(index as usize).ok_or(rusqlite::Error::IntegralValueOutOfRange(0, index))
}

fn event_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Event> {
    Ok(Event {
        seq: row.get(0)?,
        ip: row.get(1)?,
        player: row.get(2)?,
        at: row.get(3)?,
    })
}

/// An expiring event and whether it is still its address's current claim.
pub struct Expiring {
    pub event: Event,
    pub current: bool,
}

/// One write transaction. Dropped without `commit`, it rolls back.
pub struct Batch<'a> {
    tx: Transaction<'a>,
}

impl Batch<'_> {
    pub fn add_player(&self, id: PlayerId, name: &str) -> Result<()> {
        self.tx
            .prepare_cached("INSERT INTO players (id, name) VALUES (?1, ?2)")?
            .execute(params![id, name])?;
        Ok(())
    }

    pub fn owner(&self, ip: u32) -> Result<Option<Owner>> {
        let mut stmt = self
            .tx
            .prepare_cached("SELECT player, seq FROM claims WHERE ip = ?1")?;
        Ok(stmt
            .query_row([ip], |r| {
                Ok(Owner {
                    player: r.get(0)?,
                    seq: r.get(1)?,
                })
            })
            .optional()?)
    }

    pub fn record(&self, e: &Event) -> Result<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO claims (ip, player, claimed_at, seq) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (ip) DO UPDATE SET player = excluded.player,
                   claimed_at = excluded.claimed_at, seq = excluded.seq",
            )?
            .execute(params![e.ip, e.player, e.at, e.seq])?;
        self.tx
            .prepare_cached(
                "INSERT INTO events (seq, ip, player, claimed_at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![e.seq, e.ip, e.player, e.at])?;
        Ok(())
    }

    /// Events after `after` made at or before `until`, oldest first.
    pub fn expiring(&self, after: i64, until: Micros) -> Result<Vec<Expiring>> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT e.seq, e.ip, e.player, e.claimed_at, c.seq IS e.seq
             FROM events e LEFT JOIN claims c ON c.ip = e.ip
             WHERE e.seq > ?1 ORDER BY e.seq",
        )?;
        let mut rows = stmt.query([after])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let event = event_row(row)?;
            if event.at > until {
                break;
            }
            out.push(Expiring {
                event,
                current: row.get(4)?,
            });
        }
        Ok(out)
    }

    pub fn put_tally(&self, block: u8, player: PlayerId, count: u32) -> Result<()> {
        if count == 0 {
            self.tx
                .prepare_cached("DELETE FROM tallies WHERE block = ?1 AND player = ?2")?
                .execute(params![block, player])?;
        } else {
            self.tx
                .prepare_cached("INSERT OR REPLACE INTO tallies VALUES (?1, ?2, ?3)")?
                .execute(params![block, player, count])?;
        }
        Ok(())
    }

    pub fn put_lapsed(&self, w: Window, block: u8, player: PlayerId, count: u32) -> Result<()> {
        if count == 0 {
            self.tx
                .prepare_cached("DELETE FROM lapsed WHERE win = ?1 AND block = ?2 AND player = ?3")?
                .execute(params![w.index(), block, player])?;
        } else {
            self.tx
                .prepare_cached("INSERT OR REPLACE INTO lapsed VALUES (?1, ?2, ?3, ?4)")?
                .execute(params![w.index(), block, player, count])?;
        }
        Ok(())
    }

    pub fn put_holder(&self, w: Window, block: u8, holder: Option<Holder>) -> Result<()> {
        match holder {
            None => self
                .tx
                .prepare_cached("DELETE FROM holders WHERE win = ?1 AND block = ?2")?
                .execute(params![w.index(), block])?,
            Some(h) => self
                .tx
                .prepare_cached("INSERT OR REPLACE INTO holders VALUES (?1, ?2, ?3, ?4)")?
                .execute(params![w.index(), block, h.player, h.tied])?,
        };
        Ok(())
    }

    pub fn put_cursors(&self, cursors: &Cursors) -> Result<()> {
        let mut stmt = self
            .tx
            .prepare_cached("UPDATE windows SET expired_seq = ?2 WHERE win = ?1")?;
        for w in Window::SLIDING {
            stmt.execute(params![w.index(), cursors.get(w)])?;
        }
        Ok(())
    }

    pub fn finish(self, updated_at: Micros, prune_upto: i64) -> Result<()> {
        self.tx
            .prepare_cached("UPDATE meta SET value = ?1 WHERE key = 'updated_at'")?
            .execute([updated_at])?;
        self.tx
            .prepare_cached("DELETE FROM events WHERE seq <= ?1")?
            .execute([prune_upto])?;
        self.tx.commit()?;
        Ok(())
    }
}

/// Copies committed WAL frames into the database file on its own thread and
/// connection, so that commits seldom wait for a checkpoint. Under constant
/// writes a passive checkpoint never catches up with the end of the WAL, so
/// the writer's own auto-checkpoint ([`AUTOCHECKPOINT_PAGES`]) still runs: it
/// finds almost every frame copied already, copies the tail, and lets the WAL
/// restart.
///
/// Each pass ends with an fsync of the database file. Random claims dirty
/// random blocks of `claims`, so a pass every 100 ms wrote nearly one block per
/// claim, and the writer spent a third of its time with the WAL's own fsync
/// held back by the kernel's writeback throttling behind those writes. A pass
/// every 2 s lets many claims share a block between two write-backs:
/// `cargo bench --bench claims` at 10M stored went from 21k to 37k claims/s.
pub struct Checkpointer {
    stop: Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    const EVERY: Duration = Duration::from_secs(2);

    pub fn start(path: &Path) -> Result<Checkpointer> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_millis(50))?;
        let stop = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("cti-checkpoint".into())
            .spawn(move || {
                let (lock, wake) = &*flag;
                let mut stopped = lock.lock().unwrap_or_else(|p| p.into_inner());
                while !*stopped {
                    // A busy or failed pass is retried on the next tick.
                    let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                    stopped = wake
                        .wait_timeout(stopped, Self::EVERY)
                        .map(|(g, _)| g)
                        .unwrap_or_else(|p| p.into_inner().0);
                }
            })
            .map_err(|e| Error::Open {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        Ok(Checkpointer {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let (lock, wake) = &*self.stop;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
