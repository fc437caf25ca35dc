//! The store as an independent reader sees it: the `sqlite3` shell
//! (installed by `scripts/install-deps`), not the core.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

/// The owner of every claimed address (`a.b.c.d` to name) in the store at `db`.
pub fn owners(db: &Path) -> HashMap<String, String> {
    let out = Command::new("sqlite3")
        .arg(db)
        .arg(
            "SELECT (ip>>24)||'.'||((ip>>16)&255)||'.'||((ip>>8)&255)||'.'||(ip&255), p.name \
             FROM claims c JOIN players p ON p.id = c.player;",
        )
        .output()
        .expect("the sqlite3 shell (scripts/install-deps installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('|'))
        .map(|(ip, name)| (ip.to_string(), name.to_string()))
        .collect()
}
