//! Embedding without surprises: one writer per file, read-only handles,
//! foreign files left alone, private files, a writer that notices the file
//! changed behind its back, and what the callback thread may call.

use cti_core::{Error, Limits, ManualClock, NickLimits, Store, Window};
use std::os::unix::fs::PermissionsExt;
use std::sync::{mpsc, Arc};
use std::time::Duration;

const T0: i64 = 1_700_000_000_000_000;

fn open(path: &std::path::Path) -> Store {
    let store = Store::open(path).unwrap();
    store.set_limits(Limits::OFF).unwrap();
    store.set_nick_limits(NickLimits::OFF).unwrap();
    store
}

#[test]
fn one_writer_per_file_and_the_refusal_names_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.db");
    let first = open(&path);
    first.claim("1.0.0.1", "a").unwrap();
    let err = Store::open(&path).err().expect("a second writer");
    assert!(
        matches!(&err, Error::Locked { holder, .. } if holder.contains(&std::process::id().to_string())),
        "{err}"
    );
    first.claim("1.0.0.2", "a").unwrap();
    first.check().unwrap();
    drop(first);
    open(&path).check().unwrap();
}

#[test]
fn read_only_handles_follow_the_writer_and_refuse_claims() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.db");
    let writer = open(&path);
    writer.claim("2.0.0.1", "a").unwrap();
    let reader = Store::open_readonly(&path).unwrap();
    assert!(reader.is_readonly());
    assert!(matches!(reader.claim("2.0.0.9", "b"), Err(Error::ReadOnly)));
    assert!(matches!(reader.check(), Err(Error::ReadOnly)));
    writer.claim("2.0.0.2", "b").unwrap();
    writer.claim("2.0.0.3", "b").unwrap();
    // It sees the writer's commits within a quarter of a second.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let b = &reader.blocks(Window::All).unwrap().blocks[2];
        if b.holder.as_deref() == Some("b") {
            assert_eq!(b.total, 3);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the reader never saw b's claims"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    reader.health().unwrap();
    drop(writer);
    assert_eq!(
        reader.recent(10).unwrap().claims.len(),
        3,
        "it outlives the writer"
    );
}

#[test]
fn a_foreign_database_is_refused_and_left_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE players (who TEXT); INSERT INTO players VALUES ('x');")
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    for result in [Store::open(&path).err(), Store::open_readonly(&path).err()] {
        let err = result.expect("refused");
        assert!(
            matches!(&err, Error::Open { message, .. } if message.contains("not a cti store")),
            "{err}"
        );
    }
    assert_eq!(std::fs::read(&path).unwrap(), before, "not a byte changed");
    let beside = |d: &std::path::Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(beside(dir.path()), ["other.db"], "nothing made beside it");
    // The same for a WAL-mode database and for a file that is not SQLite.
    let wal_dir = tempfile::tempdir().unwrap();
    let wal = wal_dir.path().join("wal.db");
    {
        let conn = rusqlite::Connection::open(&wal).unwrap();
        let _: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .unwrap();
        conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
    }
    let text = wal_dir.path().join("notes.txt");
    std::fs::write(
        &text,
        "just text, more than a hundred bytes long ".repeat(4),
    )
    .unwrap();
    let files_before = beside(wal_dir.path());
    for p in [&wal, &text] {
        let bytes = std::fs::read(p).unwrap();
        assert!(Store::open(p).is_err() && Store::open_readonly(p).is_err());
        assert_eq!(std::fs::read(p).unwrap(), bytes);
    }
    assert_eq!(
        beside(wal_dir.path()),
        files_before,
        "nothing made beside them"
    );
    let dev_null = Store::open(std::path::Path::new("/dev/null"))
        .err()
        .unwrap();
    assert!(matches!(dev_null, Error::Open { .. }), "{dev_null}");
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    open(&empty).claim("3.0.0.1", "a").unwrap();
}

#[test]
fn a_new_store_is_readable_by_its_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.db");
    let store = open(&path);
    store.claim("4.0.0.1", "a").unwrap();
    for f in ["g.db", "g.db-wal", "g.db-shm", "g.db-lock"] {
        let mode = std::fs::metadata(dir.path().join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
}

#[test]
fn a_writer_whose_file_was_changed_behind_its_back_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.db");
    let store = open(&path);
    store.claim("5.0.0.1", "a").unwrap();
    store.health().unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute("DELETE FROM claims", []).unwrap();
    let claim = store.claim("5.0.0.2", "a");
    assert!(
        matches!(&claim, Err(Error::Unavailable(m)) if m.contains("another program")),
        "{claim:?}"
    );
    assert!(
        store.health().is_err(),
        "health must not say OK while every claim fails"
    );
}

#[test]
fn the_callback_thread_may_read_but_not_wait_for_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let store = Arc::new(Store::open_with_clock(&dir.path().join("g.db"), clock).unwrap());
    let (tx, rx) = mpsc::channel();
    let s = store.clone();
    store
        .claim_with(
            "6.0.0.1",
            "a",
            Box::new(move |r| {
                assert!(r.is_ok());
                let read = s.blocks(Window::All).map(|b| b.blocks[6].total);
                let waits = [
                    s.claim("6.0.0.2", "a").err(),
                    s.health().err(),
                    s.check().err(),
                ];
                drop(tx.send((read, waits)));
            }),
        )
        .unwrap();
    let (read, waits) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the callback ran and returned");
    assert_eq!(read, Ok(1));
    for e in waits {
        assert!(matches!(e, Some(Error::WrongThread(_))), "{e:?}");
    }
}

/// Another process (here Python's sqlite3 module, as a backup script would
/// be) opens the live file read-write and closes it. SQLite deletes the WAL
/// on the last close it sees, and it sees the last close unless this process
/// holds its shared lock on the file: a store must keep that lock for its
/// whole life, although POSIX drops every lock a process has on a file when
/// any descriptor on it is closed.
#[test]
fn another_process_closing_the_file_leaves_the_wal_to_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.db");
    let store = open(&path);
    // A read-only handle in the same process, opened after the writer.
    let reader = Store::open_readonly(&path).unwrap();
    store.claim("1.0.0.1", "a").unwrap();
    let wal = cti_core_wal(&path);
    assert!(wal.exists(), "the store writes through a WAL");
    let count = || {
        let script = "import sqlite3, sys\n\
                      c = sqlite3.connect(sys.argv[1])\n\
                      print(c.execute('select count(*) from claims').fetchone()[0])\n\
                      c.close()\n";
        let out = std::process::Command::new("python3")
            .args(["-c", script])
            .arg(&path)
            .output()
            .expect("python3 (installed by scripts/install-deps)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(count(), "1");
    assert!(
        wal.exists(),
        "the other process's close deleted the live WAL"
    );
    // An acknowledged claim is where every other process reads.
    store.claim("1.0.0.2", "a").unwrap();
    assert_eq!(count(), "2");
    assert!(wal.exists());
    drop(reader);
    drop(store);
    open(&path).check().unwrap();
}

fn cti_core_wal(db: &std::path::Path) -> std::path::PathBuf {
    let mut name = db.file_name().unwrap().to_os_string();
    name.push("-wal");
    db.with_file_name(name)
}
