//! The SQLite store: schema, migrations, the ownership check at open, loading
//! the in-memory state, and the statements a batch runs. Every claim is
//! stored in its own commit's transaction; the aggregates that count the
//! claims (`counts`, `holders`, the window cursors) are a snapshot
//! the writer takes about once a second in the same kind of transaction,
//! with what it needs to replay the claims since (`snapshot_seq`, and in
//! each claim's row the claim it replaced). After any crash, opening replays
//! them onto the snapshot and the in-memory state equals a recount (see
//! `check`). Writing the aggregates once a second instead of in every
//! claim's transaction keeps their cost from growing as the windows fill and
//! slide: a (block, player) row changed by many claims and lapses within a
//! second is written once.
//!
//! Storage grows with addresses, not claims: `claims` holds the current claim
//! of each address (a claim replaces the row of its address), and the recent
//! list is the newest rows of `claims` by sequence number.
//!
//! Durability: WAL with `synchronous=FULL`. A commit returns only after the
//! WAL is fsynced, so an acknowledged claim survives a process crash and a
//! power loss (given a disk that honours fsync).

use crate::aggregates::{Aggregates, Deltas, Leader, PlayerId};
use crate::claim::{self, Cursors, Owner};
use crate::error::{Error, Result};
use crate::files;
use crate::fork;
use crate::window::{Micros, Window};
use rusqlite::{
    params, Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior,
};
use rustc_hash::FxHashMap as HashMap;
use std::mem::ManuallyDrop;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The newest schema this build reads and writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 4;

/// `PRAGMA application_id` of a cti store: "CTIP".
pub const APPLICATION_ID: i64 = 0x4354_4950;

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

/// Length of the recent list: the newest current claims.
pub const RECENT_KEEP: usize = 500;

/// Migrations, indexed by the version they upgrade from.
const MIGRATIONS: &[&str] = &[
    // 0 -> 1
    "CREATE TABLE players (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
     CREATE TABLE claims (ip INTEGER PRIMARY KEY, player INTEGER NOT NULL,
                          claimed_at INTEGER NOT NULL, seq INTEGER NOT NULL);
     CREATE TABLE events (seq INTEGER PRIMARY KEY, ip INTEGER NOT NULL,
                          player INTEGER NOT NULL, claimed_at INTEGER NOT NULL);
     CREATE TABLE tallies (block INTEGER NOT NULL, player INTEGER NOT NULL, count INTEGER NOT NULL,
                           PRIMARY KEY (block, player)) WITHOUT ROWID;
     CREATE TABLE lapsed (win INTEGER NOT NULL, block INTEGER NOT NULL, player INTEGER NOT NULL,
                          count INTEGER NOT NULL, PRIMARY KEY (win, block, player)) WITHOUT ROWID;
     CREATE TABLE holders (win INTEGER NOT NULL, block INTEGER NOT NULL, player INTEGER,
                           tied INTEGER NOT NULL, PRIMARY KEY (win, block)) WITHOUT ROWID;
     CREATE TABLE windows (win INTEGER PRIMARY KEY, expired_seq INTEGER NOT NULL);
     INSERT INTO windows VALUES (0,0),(1,0),(2,0),(3,0),(4,0),(5,0);
     CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
     INSERT INTO meta VALUES ('updated_at', 0);",
    // 1 -> 2: one row per address. The per-claim log goes; `claims` (the
    // current claim of each address) is ordered by `seq` for the windows and
    // the recent list, and `last_seq` keeps sequence numbers rising past
    // every window cursor.
    //
    // Tables after this migration:
    //   players  (id, name)              every name ever seen; only live ones are in memory
    //   claims   (ip, player, claimed_at, seq)   the current claim of each address
    //   tallies  (block, player, count)  addresses each player owns per block (`all`)
    //   lapsed   (win, block, player, count)     of those, how many have left each sliding window
    //   holders  (win, block, player, tied)      who holds each (window, block) with claims
    //   windows  (win, expired_seq)      per window, the last seq it has expired
    //   meta     (key, value)            updated_at (time of the last commit), last_seq
    "INSERT OR REPLACE INTO meta VALUES ('last_seq',
         max((SELECT coalesce(max(seq), 0) FROM events), (SELECT coalesce(max(seq), 0) FROM claims)));
     DROP TABLE events;
     CREATE UNIQUE INDEX claims_seq ON claims (seq);",
    // 2 -> 3: the aggregates (`tallies`, `lapsed`, `holders`, the window
    // cursors in `windows`) are a snapshot, written about once a second
    // instead of in every claim's transaction: `snapshot_seq` is the newest
    // claim it includes, and a claim made since keeps in its row
    // (`base_player`, `base_seq`) the claim of its address that the snapshot
    // counted, if any. Opening replays the claims after `snapshot_seq` onto
    // the snapshot. A schema-2 store was up to date at its last commit.
    // (The base is kept in the claim's own row, whose page a claim writes
    // anyway: a table of its own cost a page more per claim in the WAL.)
    //
    // The index by `seq` covers what is read in that order (the windows'
    // lapses, the recent list, the replay): without the table's row, which
    // is a random page for each claim.
    "ALTER TABLE claims ADD COLUMN base_player INTEGER;
     ALTER TABLE claims ADD COLUMN base_seq INTEGER;
     DROP INDEX claims_seq;
     CREATE INDEX claims_by_seq ON claims (seq, player, claimed_at);
     INSERT OR REPLACE INTO meta VALUES ('snapshot_seq',
         coalesce((SELECT value FROM meta WHERE key = 'last_seq'), 0));",
    // 3 -> 4: one row per (block, player) holds its counts in every window
    // (`counts`: hour, day, week, month, year, total). A snapshot then
    // writes one row for a changed pair: `tallies` and `lapsed` (a row per
    // sliding window, keyed by window first) put one pair's rows on up to
    // six pages.
    "CREATE TABLE counts (block INTEGER NOT NULL, player INTEGER NOT NULL,
                          hour INTEGER NOT NULL, day INTEGER NOT NULL, week INTEGER NOT NULL,
                          month INTEGER NOT NULL, year INTEGER NOT NULL, total INTEGER NOT NULL,
                          PRIMARY KEY (block, player)) WITHOUT ROWID;
     INSERT INTO counts
       SELECT t.block, t.player,
              t.count - coalesce(sum(l.count) FILTER (WHERE l.win = 0), 0),
              t.count - coalesce(sum(l.count) FILTER (WHERE l.win = 1), 0),
              t.count - coalesce(sum(l.count) FILTER (WHERE l.win = 2), 0),
              t.count - coalesce(sum(l.count) FILTER (WHERE l.win = 3), 0),
              t.count - coalesce(sum(l.count) FILTER (WHERE l.win = 4), 0),
              t.count
       FROM tallies t LEFT JOIN lapsed l ON l.block = t.block AND l.player = t.player
       GROUP BY t.block, t.player;
     DROP TABLE tallies;
     DROP TABLE lapsed;",
];

/// The tables of a schema-1 store, made before stores carried an application id.
const V1_TABLES: &[&str] = &[
    "claims", "events", "holders", "lapsed", "meta", "players", "tallies", "windows",
];

/// The current claim of one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimRow {
    pub seq: i64,
    pub ip: u32,
    pub player: PlayerId,
    pub at: Micros,
}

impl ClaimRow {
    pub fn block(&self) -> u8 {
        (self.ip >> 24) as u8
    }
}

/// Everything a store keeps in memory, read at open without scanning claims.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// Live players: those owning an address or in the recent list.
    pub names: HashMap<PlayerId, Arc<str>>,
    pub aggregates: Aggregates,
    pub cursors: Cursors,
    pub last_seq: i64,
    /// Time of the last commit: store time never runs back before it.
    pub updated_at: Micros,
    /// The newest claim the stored aggregates include (see `replay`).
    pub snapshot_seq: i64,
    /// (block, player) pairs whose counts differ from the stored aggregates.
    pub replayed: Vec<(u8, PlayerId)>,
    /// Newest first, at most `RECENT_KEEP`.
    pub recent: Vec<ClaimRow>,
}

pub struct Db {
    /// Closed in `drop`, inside a [`fork::hold`] like every SQLite call.
    conn: ManuallyDrop<Connection>,
    path: String,
    /// Dropped after `conn` (fields drop in order): the file counts as
    /// held while SQLite may hold a lock on it.
    _held: files::Held,
}

impl Db {
    /// Opens (creating if needed) a store for writing. A non-empty file that
    /// is not a cti store is refused before anything is written to it.
    pub fn open(path: &Path) -> Result<Db> {
        let _fork = fork::hold();
        let shown = path.display().to_string();
        let open_err = |message: String| Error::Open {
            path: shown.clone(),
            message,
        };
        if files::inspect(path).map_err(&open_err)? == files::Kind::Missing {
            files::create_private(path).map_err(|e| open_err(e.to_string()))?;
        }
        let held = files::hold(path).map_err(|e| open_err(e.to_string()))?;
        let conn = Connection::open(path).map_err(|e| open_err(e.to_string()))?;
        ensure_ours(&conn).map_err(&open_err)?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(|e| open_err(e.to_string()))?;
        configure(&conn).map_err(|e| open_err(e.to_string()))?;
        let mut db = Db {
            conn: ManuallyDrop::new(conn),
            path: shown,
            _held: held,
        };
        db.migrate()?;
        Ok(db)
    }

    /// Opens an existing store for reading only; it is never written to.
    pub fn open_readonly(path: &Path) -> Result<Db> {
        let _fork = fork::hold();
        let shown = path.display().to_string();
        let open_err = |message: String| Error::Open {
            path: shown.clone(),
            message,
        };
        if files::inspect(path).map_err(&open_err)? != files::Kind::Data {
            return Err(open_err("no store there to read".into()));
        }
        let held = files::hold(path).map_err(|e| open_err(e.to_string()))?;
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| open_err(e.to_string()))?;
        ensure_ours(&conn).map_err(&open_err)?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(|e| open_err(e.to_string()))?;
        let db = Db {
            conn: ManuallyDrop::new(conn),
            path: shown.clone(),
            _held: held,
        };
        let found = db.user_version()?;
        if found > SCHEMA_VERSION {
            return Err(db.schema_error(found));
        }
        if found < SCHEMA_VERSION {
            return Err(open_err(format!(
                "schema version {found} is older than {SCHEMA_VERSION}: open it for writing once to upgrade it"
            )));
        }
        Ok(db)
    }

    fn user_version(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    fn schema_error(&self, found: i64) -> Error {
        Error::Schema {
            path: self.path.clone(),
            found,
            known: SCHEMA_VERSION,
        }
    }

    fn migrate(&mut self) -> Result<()> {
        let found = self.user_version()?;
        if found > SCHEMA_VERSION {
            return Err(self.schema_error(found));
        }
        for (from, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Exclusive)?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", from as i64 + 1)?;
            tx.pragma_update(None, "application_id", APPLICATION_ID)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// Changes when another connection commits (`PRAGMA data_version`).
    pub fn data_version(&self) -> Result<i64> {
        let _fork = fork::hold();
        Ok(self
            .conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))?)
    }

    /// Reads the in-memory state: live players, tallies, cursors, the recent
    /// list. Cost grows with live players and their blocks, and with the
    /// claims since the last snapshot of the aggregates, never with all claims.
    pub fn load(&self) -> Result<Loaded> {
        let _fork = fork::hold();
        let tx = self.conn.unchecked_transaction()?;
        let mut loaded = Loaded::default();
        let mut stmt = self.conn.prepare("SELECT win, expired_seq FROM windows")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            loaded.cursors.set(window_of(row.get(0)?)?, row.get(1)?);
        }
        loaded.aggregates = self.load_tallies()?;
        loaded.snapshot_seq = self.meta("snapshot_seq")?;
        loaded.replayed =
            self.replay(&mut loaded.aggregates, &loaded.cursors, loaded.snapshot_seq)?;
        loaded.updated_at = self.meta("updated_at")?;
        loaded.last_seq = self.meta("last_seq")?;
        loaded.recent = self.newest(RECENT_KEEP)?;
        let mut name = self
            .conn
            .prepare_cached("SELECT name FROM players WHERE id = ?1")?;
        let owners = loaded.aggregates.players(Window::All);
        for id in owners.chain(loaded.recent.iter().map(|r| r.player)) {
            if let std::collections::hash_map::Entry::Vacant(e) = loaded.names.entry(id) {
                let n: String = name.query_row([id], |r| r.get(0))?;
                e.insert(n.into());
            }
        }
        drop(rows);
        drop(stmt);
        drop(name);
        tx.commit()?;
        Ok(loaded)
    }

    fn meta(&self, key: &str) -> Result<i64> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?
            .unwrap_or(0))
    }

    /// Rebuilds every window's tallies from the snapshot's `counts`.
    fn load_tallies(&self) -> Result<Aggregates> {
        let mut deltas = Deltas::default();
        let mut stmt = self
            .conn
            .prepare("SELECT block, player, hour, day, week, month, year, total FROM counts")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let d = deltas.entry((row.get(0)?, row.get(1)?)).or_default();
            for w in Window::EVERY {
                d[w.index()] = row.get(2 + w.index())?;
            }
        }
        let mut aggregates = Aggregates::default();
        aggregates.apply(&deltas);
        Ok(aggregates)
    }

    /// Brings the snapshot of the aggregates (`snapshot_seq` and the
    /// `cursors` it was taken at) up to the last commit: each claim made since
    /// comes in (in every window: the windows then slide from the snapshot's
    /// cursors, as the writer and the readers do), and the claim it replaced,
    /// if the snapshot counted one, leaves. Gives the (block, player) pairs it
    /// changed, which the next snapshot writes.
    fn replay(
        &self,
        aggregates: &mut Aggregates,
        cursors: &Cursors,
        since: i64,
    ) -> Result<Vec<(u8, PlayerId)>> {
        let mut deltas = Deltas::default();
        let mut stmt = self
            .conn
            .prepare("SELECT ip, player, base_player, base_seq FROM claims WHERE seq > ?1")?;
        let mut rows = stmt.query([since])?;
        while let Some(row) = rows.next()? {
            let block = (row.get::<_, u32>(0)? >> 24) as u8;
            let base: (Option<PlayerId>, Option<i64>) = (row.get(2)?, row.get(3)?);
            if let (Some(player), Some(seq)) = base {
                claim::uncount(&mut deltas, cursors, block, &Owner { player, seq, at: 0 });
            }
            claim::count(&mut deltas, block, row.get(1)?);
        }
        aggregates.apply(&deltas);
        Ok(deltas.into_keys().collect())
    }

    /// The newest current claims, newest first.
    pub fn newest(&self, limit: usize) -> Result<Vec<ClaimRow>> {
        let _fork = fork::hold();
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, ip, player, claimed_at FROM claims ORDER BY seq DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit as i64], claim_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Current claims with `after < seq <= upto`, oldest first, at most
    /// `limit`, and the newest seq committed when they were read (one
    /// snapshot: the readers' view may be behind it, see `schedule::Lane`).
    pub fn current_between(
        &self,
        after: i64,
        upto: i64,
        limit: usize,
    ) -> Result<(Vec<ClaimRow>, i64)> {
        let _fork = fork::hold();
        let snapshot = self.conn.unchecked_transaction()?;
        let rows = {
            let mut stmt = self.conn.prepare_cached(
                "SELECT seq, ip, player, claimed_at FROM claims
                 WHERE seq > ?1 AND seq <= ?2 ORDER BY seq LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![after, upto, limit as i64], claim_row)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()?
        };
        let newest = self.meta("last_seq")?;
        snapshot.commit()?;
        Ok((rows, newest))
    }

    /// When the next still-counted claim slides out of some window, if any.
    pub fn next_expiry(&self, cursors: &Cursors) -> Result<Option<Micros>> {
        let _fork = fork::hold();
        let mut stmt = self
            .conn
            .prepare_cached("SELECT claimed_at FROM claims WHERE seq > ?1 ORDER BY seq LIMIT 1")?;
        let mut due: Option<Micros> = None;
        for w in Window::SLIDING {
            let at: Option<Micros> = stmt.query_row([cursors.get(w)], |r| r.get(0)).optional()?;
            if let (Some(at), Some(len)) = (at, w.length()) {
                due = Some(due.map_or(at + len, |d| d.min(at + len)));
            }
        }
        Ok(due)
    }

    /// Runs `f` in one write transaction, committed if `f` succeeds and
    /// rolled back if it fails.
    pub fn write<T>(&mut self, f: impl FnOnce(&Batch<'_>) -> Result<T>) -> Result<T> {
        let _fork = fork::hold();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let batch = Batch { tx };
        let out = f(&batch)?;
        batch.tx.commit()?;
        Ok(out)
    }

    /// Counts per (block, player) of the current claims that count in each
    /// window, by each window's predicate on a claim (`seq`, `claimed_at`).
    pub fn recount(&self, counts: impl Fn(Window, i64, Micros) -> bool) -> Result<Aggregates> {
        let _fork = fork::hold();
        let mut deltas = Deltas::default();
        let mut stmt = self
            .conn
            .prepare("SELECT ip >> 24, player, seq, claimed_at FROM claims")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let (block, player, seq, at): (u8, PlayerId, i64, Micros) =
                (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
            let d = deltas.entry((block, player)).or_default();
            for w in Window::EVERY {
                d[w.index()] += i64::from(counts(w, seq, at));
            }
        }
        let mut recount = Aggregates::default();
        recount.apply(&deltas);
        Ok(recount)
    }

    /// What the store has persisted.
    pub fn persisted(&self) -> Result<Persisted> {
        let _fork = fork::hold();
        let loaded = self.load()?;
        let mut stmt = self
            .conn
            .prepare("SELECT win, block, player, tied FROM holders")?;
        let mut rows = stmt.query([])?;
        let mut holders = HashMap::default();
        while let Some(row) = rows.next()? {
            let holder = Holder {
                player: row.get(2)?,
                tied: row.get(3)?,
            };
            holders.insert((window_of(row.get(0)?)?, row.get(1)?), holder);
        }
        let max_seq: i64 =
            self.conn
                .query_row("SELECT coalesce(max(seq), 0) FROM claims", [], |r| r.get(0))?;
        Ok(Persisted {
            loaded,
            holders,
            max_seq,
        })
    }
}

/// Everything `check` compares with a recount.
pub struct Persisted {
    /// Tallies, cursors, `last_seq`, `updated_at`.
    pub loaded: Loaded,
    pub holders: HashMap<(Window, u8), Holder>,
    /// The highest `seq` in `claims`.
    pub max_seq: i64,
}

/// Refuses a database that some other program made. Reads only: nothing is
/// written before this passes.
fn ensure_ours(conn: &Connection) -> std::result::Result<(), String> {
    let read = || -> rusqlite::Result<(i64, i64, Vec<String>)> {
        let app: i64 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        Ok((app, version, tables(conn)?))
    };
    let (app, version, tables) = read().map_err(|e| e.to_string())?;
    let legacy = app == 0
        && version == 1
        && tables
            .iter()
            .map(String::as_str)
            .eq(V1_TABLES.iter().copied());
    if app == APPLICATION_ID || legacy || (app == 0 && version == 0 && tables.is_empty()) {
        return Ok(());
    }
    Err(format!(
        "not a cti store (application_id {app:#x}, user_version {version}, tables: {}); \
         refusing to change it",
        if tables.is_empty() {
            "none".to_string()
        } else {
            tables.join(", ")
        }
    ))
}

fn tables(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
    )?;
    let names = stmt.query_map([], |r| r.get(0))?;
    names.collect()
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

fn window_of(index: i64) -> rusqlite::Result<Window> {
    Window::from_index(index as usize).ok_or(rusqlite::Error::IntegralValueOutOfRange(0, index))
}

fn claim_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ClaimRow> {
    Ok(ClaimRow {
        seq: row.get(0)?,
        ip: row.get(1)?,
        player: row.get(2)?,
        at: row.get(3)?,
    })
}

impl Drop for Db {
    fn drop(&mut self) {
        let _fork = fork::hold();
        // SAFETY: `conn` is dropped here once and never used again.
        unsafe { ManuallyDrop::drop(&mut self.conn) };
    }
}

/// One write transaction, open for the length of [`Db::write`].
pub struct Batch<'a> {
    tx: Transaction<'a>,
}

impl Batch<'_> {
    /// The id of a name seen before, live or not.
    pub fn player_id(&self, name: &str) -> Result<Option<PlayerId>> {
        Ok(self
            .tx
            .prepare_cached("SELECT id FROM players WHERE name = ?1")?
            .query_row([name], |r| r.get(0))
            .optional()?)
    }

    pub fn add_player(&self, name: &str) -> Result<PlayerId> {
        self.tx
            .prepare_cached("INSERT INTO players (name) VALUES (?1)")?
            .execute([name])?;
        PlayerId::try_from(self.tx.last_insert_rowid())
            .map_err(|_| Error::Unavailable("player ids are exhausted".into()))
    }

    pub fn owner(&self, ip: u32) -> Result<Option<Owner>> {
        let mut stmt = self
            .tx
            .prepare_cached("SELECT player, seq, claimed_at FROM claims WHERE ip = ?1")?;
        Ok(stmt
            .query_row([ip], |r| {
                Ok(Owner {
                    player: r.get(0)?,
                    seq: r.get(1)?,
                    at: r.get(2)?,
                })
            })
            .optional()?)
    }

    /// Makes `c` the current claim of its address. The claim it replaces
    /// becomes the row's base if the snapshot of the aggregates (taken at
    /// `snapshot_seq`) counts it; otherwise the base stays, which is the
    /// claim the snapshot counts (or a stale one that no replay reads: only
    /// rows after `snapshot_seq` are replayed, and each was written since).
    pub fn record(&self, c: &ClaimRow, snapshot_seq: i64) -> Result<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO claims (ip, player, claimed_at, seq) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (ip) DO UPDATE SET
                   base_player = iif(seq <= ?5, player, base_player),
                   base_seq = iif(seq <= ?5, seq, base_seq),
                   player = excluded.player, claimed_at = excluded.claimed_at,
                   seq = excluded.seq",
            )?
            .execute(params![c.ip, c.player, c.at, c.seq, snapshot_seq])?;
        Ok(())
    }

    /// Current claims after `after` made at or before `until`, oldest first.
    pub fn lapsing(&self, after: i64, until: Micros) -> Result<Vec<ClaimRow>> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT seq, ip, player, claimed_at FROM claims WHERE seq > ?1 ORDER BY seq",
        )?;
        let mut rows = stmt.query([after])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let c = claim_row(row)?;
            if c.at > until {
                break;
            }
            out.push(c);
        }
        Ok(out)
    }

    /// Stores the counts of `player` in `block`, window by window (indexed
    /// as [`Window::index`]); a pair with no address left has no row.
    pub fn put_counts(&self, block: u8, player: PlayerId, counts: &[u32; 6]) -> Result<()> {
        if counts[Window::All.index()] == 0 {
            self.tx
                .prepare_cached("DELETE FROM counts WHERE block = ?1 AND player = ?2")?
                .execute(params![block, player])?;
        } else {
            let [hour, day, week, month, year, total] = *counts;
            self.tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO counts VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?
                .execute(params![block, player, hour, day, week, month, year, total])?;
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

    /// Marks the stored aggregates as taken at `last_seq`: nothing is left to replay.
    pub fn put_snapshot(&self, last_seq: i64) -> Result<()> {
        self.tx
            .prepare_cached("INSERT OR REPLACE INTO meta VALUES ('snapshot_seq', ?1)")?
            .execute([last_seq])?;
        Ok(())
    }

    /// The time of this commit and the newest `seq` it holds.
    pub fn put_meta(&self, updated_at: Micros, last_seq: i64) -> Result<()> {
        let mut stmt = self
            .tx
            .prepare_cached("INSERT OR REPLACE INTO meta VALUES (?1, ?2)")?;
        stmt.execute(params!["updated_at", updated_at])?;
        stmt.execute(params!["last_seq", last_seq])?;
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
        let conn = {
            let _fork = fork::hold();
            let conn = Connection::open(path)?;
            conn.busy_timeout(Duration::from_millis(50))?;
            conn
        };
        let stop = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("cti-checkpoint".into())
            .spawn(move || {
                let (lock, wake) = &*flag;
                let mut stopped = lock.lock().unwrap_or_else(|p| p.into_inner());
                while !*stopped {
                    // A busy or failed pass is retried on the next tick.
                    let fork = fork::hold();
                    let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                    drop(fork);
                    stopped = wake
                        .wait_timeout(stopped, Self::EVERY)
                        .map(|(g, _)| g)
                        .unwrap_or_else(|p| p.into_inner().0);
                }
                let _fork = fork::hold();
                drop(conn);
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
