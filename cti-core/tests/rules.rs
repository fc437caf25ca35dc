//! The game rules end to end through the core's Rust API, on a real SQLite file.

use cti_core::{Error, Limits, ManualClock, NickLimits, Query, Store, Window};
use std::sync::Arc;

const HOUR: i64 = 3_600_000_000;
const DAY: i64 = 24 * HOUR;
const T0: i64 = 1_700_000_000_000_000;

struct Game {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    clock: Arc<ManualClock>,
    store: Option<Store>,
}

impl Game {
    fn new() -> Game {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("game.db");
        let clock = Arc::new(ManualClock::new(T0));
        let store = open_unlimited(&path, &clock);
        Game {
            _dir: dir,
            path,
            clock,
            store: Some(store),
        }
    }

    fn s(&self) -> &Store {
        self.store.as_ref().unwrap()
    }

    fn claim(&self, ip: &str, nick: &str) {
        self.s().claim(ip, nick).unwrap();
    }

    fn reopen(&mut self) {
        self.store = None;
        self.store = Some(open_unlimited(&self.path, &self.clock));
    }

    fn holder(&self, w: Window, block: usize) -> (Option<String>, bool, u32, u64) {
        let b = &self.s().blocks(w).unwrap().blocks[block];
        (b.holder.clone(), b.tied, b.claims, b.total)
    }

    fn ranking(&self, w: Window) -> Vec<(String, Vec<u8>, u64)> {
        self.s()
            .ranks(w)
            .unwrap()
            .rankings
            .into_iter()
            .map(|r| (r.name, r.blocks, r.claims))
            .collect()
    }
}

fn open_unlimited(path: &std::path::Path, clock: &Arc<ManualClock>) -> Store {
    let store = Store::open_with_clock(path, clock.clone()).unwrap();
    store.set_limits(Limits::OFF).unwrap();
    store.set_nick_limits(NickLimits::OFF).unwrap();
    store
}

fn some(s: &str) -> Option<String> {
    Some(s.to_string())
}

#[test]
fn strict_majority_holds_a_block_and_ties_hold_nothing() {
    let g = Game::new();
    g.claim("10.0.0.1", "alice");
    assert_eq!(g.holder(Window::All, 10), (some("alice"), false, 1, 1));
    g.claim("10.0.0.2", "bob");
    assert_eq!(g.holder(Window::All, 10), (None, true, 1, 2));
    g.claim("10.9.9.9", "bob");
    assert_eq!(g.holder(Window::All, 10), (some("bob"), false, 2, 3));
    assert_eq!(g.holder(Window::All, 11), (None, false, 0, 0));
    g.s().check().unwrap();
}

#[test]
fn last_claim_wins_and_steals_move_addresses() {
    let g = Game::new();
    g.claim("20.0.0.1", "alice");
    g.claim("20.0.0.2", "alice");
    g.claim("20.0.0.1", "mallory");
    g.claim("20.0.0.2", "mallory");
    assert_eq!(g.holder(Window::All, 20), (some("mallory"), false, 2, 2));
    assert!(
        g.s().user("alice", Window::All).is_err(),
        "alice owns nothing now"
    );
    let recent = g.s().recent(10).unwrap().claims;
    let rows: Vec<_> = recent
        .iter()
        .map(|c| (c.ip.as_str(), c.name.as_str()))
        .collect();
    assert_eq!(
        rows,
        [("20.0.0.2", "mallory"), ("20.0.0.1", "mallory")],
        "one row per address, its current owner"
    );
    g.s().check().unwrap();
}

#[test]
fn repeat_claim_changes_no_ownership_but_refreshes_the_windows() {
    let g = Game::new();
    g.claim("30.0.0.1", "alice");
    g.clock.advance(2 * HOUR);
    assert_eq!(
        g.holder(Window::Hour, 30),
        (None, false, 0, 0),
        "left the hour"
    );
    g.claim("30.0.0.1", "alice");
    assert_eq!(
        g.holder(Window::Hour, 30),
        (some("alice"), false, 1, 1),
        "back in the hour"
    );
    assert_eq!(
        g.holder(Window::All, 30),
        (some("alice"), false, 1, 1),
        "still one address"
    );
    g.s().check().unwrap();
}

#[test]
fn a_claim_leaves_each_window_exactly_at_its_length() {
    let g = Game::new();
    g.claim("40.0.0.1", "alice");
    for (w, len) in [
        (Window::Hour, HOUR),
        (Window::Day, DAY),
        (Window::Week, 7 * DAY),
        (Window::Month, 30 * DAY),
        (Window::Year, 365 * DAY),
    ] {
        g.clock.set(T0 + len - 1);
        assert_eq!(
            g.holder(w, 40).0,
            some("alice"),
            "{} one microsecond before",
            w.name()
        );
        g.clock.set(T0 + len);
        assert_eq!(g.holder(w, 40).0, None, "{} at its length", w.name());
        g.s().check().unwrap();
    }
    g.clock.set(T0 + 10 * 365 * DAY);
    assert_eq!(
        g.holder(Window::All, 40).0,
        some("alice"),
        "all never expires"
    );
}

#[test]
fn stealing_an_expired_address_only_uncounts_where_it_still_counted() {
    let g = Game::new();
    g.claim("50.0.0.1", "alice");
    g.clock.advance(2 * HOUR);
    g.claim("50.0.0.1", "bob");
    assert_eq!(g.holder(Window::Hour, 50), (some("bob"), false, 1, 1));
    assert_eq!(g.holder(Window::Day, 50), (some("bob"), false, 1, 1));
    assert_eq!(g.holder(Window::All, 50), (some("bob"), false, 1, 1));
    g.s().check().unwrap();
}

#[test]
fn ranking_orders_by_blocks_then_addresses_then_name_bytes() {
    let g = Game::new();
    // zed: 2 blocks. amy and Bob: 1 block with 2 addresses each. cat: 1 block, 1 address.
    for ip in ["1.0.0.1", "2.0.0.1"] {
        g.claim(ip, "zed");
    }
    for ip in ["3.0.0.1", "3.0.0.2"] {
        g.claim(ip, "amy");
    }
    for ip in ["4.0.0.1", "4.0.0.2"] {
        g.claim(ip, "Bob");
    }
    g.claim("5.0.0.1", "cat");
    let names: Vec<String> = g.ranking(Window::All).into_iter().map(|r| r.0).collect();
    // "Bob" < "amy" in byte order (uppercase first).
    assert_eq!(names, ["zed", "Bob", "amy", "cat"]);
    let ranks = g.s().ranks(Window::All).unwrap().rankings;
    assert_eq!(
        ranks.iter().map(|r| r.rank).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    assert_eq!(ranks[0].blocks, [1, 2]);
}

#[test]
fn ties_and_non_holders_are_not_ranked() {
    let g = Game::new();
    g.claim("6.0.0.1", "a");
    g.claim("6.0.0.2", "b");
    assert!(g.ranking(Window::All).is_empty());
}

#[test]
fn player_standing_per_block() {
    let g = Game::new();
    for ip in ["7.0.0.1", "7.0.0.2", "8.0.0.1"] {
        g.claim(ip, "alice");
    }
    for ip in ["8.0.0.2", "8.0.0.3", "9.0.0.1"] {
        g.claim(ip, "bob");
    }
    g.claim("9.0.0.2", "alice");
    let u = g.s().user("alice", Window::All).unwrap();
    assert_eq!((u.blocks_held, u.claims), (1, 4));
    let st: Vec<_> = u
        .standing
        .iter()
        .map(|p| (p.block, p.rank, p.of, p.tied, p.claims))
        .collect();
    assert_eq!(
        st,
        [(7, 1, 1, false, 2), (8, 2, 2, false, 1), (9, 1, 2, true, 1)]
    );
    assert!(matches!(
        g.s().user("nobody", Window::All),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        g.s().user("bad name", Window::All),
        Err(Error::Nick(_))
    ));
}

#[test]
fn names_are_case_sensitive() {
    let g = Game::new();
    g.claim("12.0.0.1", "Bob");
    g.claim("12.0.0.2", "bob");
    assert_eq!(g.holder(Window::All, 12), (None, true, 1, 2));
}

#[test]
fn bad_input_is_refused_and_stores_nothing() {
    let g = Game::new();
    for (ip, nick) in [
        ("1.2.3.4", ""),
        ("1.2.3.4", "has space"),
        ("1.2.3.4", "<b>"),
        ("1.2.3.4", &"x".repeat(41)),
        ("::1", "alice"),
        ("2001:db8::1", "alice"),
        ("nonsense", "alice"),
    ] {
        assert!(g.s().claim(ip, nick).is_err(), "{ip} {nick} accepted");
    }
    assert!(g.s().recent(50).unwrap().claims.is_empty());
    g.claim("::ffff:13.1.2.3", "alice");
    assert_eq!(g.s().recent(1).unwrap().claims[0].ip, "13.1.2.3");
}

#[test]
fn state_survives_reopen_without_rescanning() {
    let mut g = Game::new();
    g.claim("14.0.0.1", "alice");
    g.clock.advance(30 * 60 * 1_000_000);
    g.claim("14.0.0.2", "bob");
    g.claim("14.0.0.3", "bob");
    let before = (g.ranking(Window::Hour), g.ranking(Window::All));
    g.reopen();
    assert_eq!((g.ranking(Window::Hour), g.ranking(Window::All)), before);
    assert_eq!(g.s().recent(10).unwrap().claims.len(), 3);
    // The hour slides on after reopening: alice's claim leaves first.
    g.clock.advance(31 * 60 * 1_000_000);
    assert_eq!(g.holder(Window::Hour, 14), (some("bob"), false, 2, 2));
    g.s().check().unwrap();
}

#[test]
fn clock_going_backwards_does_not_reorder_claims() {
    let g = Game::new();
    g.claim("15.0.0.1", "alice");
    g.clock.advance(-HOUR);
    g.claim("15.0.0.2", "bob");
    let recent = g.s().recent(2).unwrap().claims;
    assert!(recent[0].claimed_at >= recent[1].claimed_at);
    g.s().check().unwrap();
}

#[test]
fn recent_is_newest_first_and_capped() {
    let g = Game::new();
    for i in 0..600u32 {
        g.claim(&format!("16.0.{}.{}", i / 256, i % 256), "alice");
    }
    let r = g.s().recent(10_000).unwrap().claims;
    assert_eq!(r.len(), 500);
    assert_eq!(r[0].ip, "16.0.2.87");
}

#[test]
fn compat_renderings() {
    let g = Game::new();
    g.claim("17.0.0.1", "alice");
    let score = g.s().score_compat(Window::All).unwrap();
    assert_eq!(score.score["alice"], [(17, 1)]);
    let recent = g.s().recent_compat(50).unwrap();
    assert_eq!(
        recent.recent[0],
        (0x1100_0001, "alice".to_string(), T0 / 1_000_000)
    );
    assert_eq!(recent.now, (T0 / 1_000_000, 0));
}

#[test]
fn newer_schema_is_refused() {
    let g = Game::new();
    let path = g.path.clone();
    drop(g.store);
    let conn = rusqlite_free_bump(&path);
    assert!(conn, "could not bump user_version");
    assert!(matches!(
        Store::open(&path),
        Err(Error::Schema { found: 99, .. })
    ));
}

/// Bumps `user_version` with the sqlite3 shell, as a newer release would.
fn rusqlite_free_bump(path: &std::path::Path) -> bool {
    std::process::Command::new("sqlite3")
        .arg(path)
        .arg("PRAGMA user_version = 99;")
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[test]
fn rate_limited_claims_are_refused_and_store_nothing() {
    let g = Game::new();
    g.s()
        .set_limits(Limits {
            per_address_per_minute: 60,
            per_address_burst: 2,
            ..Limits::OFF
        })
        .unwrap();
    g.claim("18.0.0.1", "alice");
    g.claim("18.0.0.1", "alice");
    let refused = g.s().claim("18.0.0.1", "mallory");
    assert!(
        matches!(refused, Err(Error::RateLimited { retry_after: 1, .. })),
        "{refused:?}"
    );
    assert_eq!(g.holder(Window::All, 18).0, some("alice"));
    assert_eq!(g.s().recent(10).unwrap().claims[0].name, "alice");
    g.clock.advance(1_000_000);
    g.claim("18.0.0.1", "mallory");
    assert_eq!(g.holder(Window::All, 18).0, some("mallory"));
}

#[test]
fn limits_are_on_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Store::open_with_clock(&dir.path().join("d.db"), Arc::new(ManualClock::new(T0))).unwrap();
    let results: Vec<_> = (0..20)
        .map(|_| store.claim("19.0.0.1", "bot").is_ok())
        .collect();
    assert_eq!(
        results.iter().filter(|ok| **ok).count(),
        Limits::default().per_address_burst as usize
    );
}

#[test]
fn an_owner_reclaiming_within_the_hour_changes_nothing() {
    let g = Game::new();
    g.claim("21.0.0.1", "alice");
    g.claim("21.0.0.2", "bob");
    g.clock.advance(HOUR - 1);
    let again = g.s().claim("21.0.0.1", "alice").unwrap();
    assert_eq!(again.at, T0, "the claim keeps its time");
    let recent = g.s().recent(10).unwrap().claims;
    assert_eq!(recent[0].name, "bob", "no new recent row");
    g.clock.advance(1);
    assert_eq!(
        g.holder(Window::Hour, 21),
        (None, false, 0, 0),
        "both left the hour"
    );
    let refreshed = g.s().claim("21.0.0.1", "alice").unwrap();
    assert_eq!(refreshed.at, T0 + HOUR, "an hour on, it refreshes");
    assert_eq!(g.holder(Window::Hour, 21), (some("alice"), false, 1, 1));
    assert_eq!(g.s().recent(1).unwrap().claims[0].name, "alice");
    g.s().check().unwrap();
}

#[test]
fn ten_addresses_rank_without_a_block_and_all_addresses_order_ties_of_blocks() {
    let g = Game::new();
    // holder: holds block 60 with 1 address. many: 12 addresses, tied out of
    // every block. rich: holds 61 with 3 addresses and owns 9 elsewhere.
    g.claim("60.0.0.1", "holder");
    for i in 0..12 {
        g.claim(&format!("{}.0.0.1", 70 + i), "many");
        g.claim(&format!("{}.0.0.2", 70 + i), "rival");
    }
    for i in 0..3 {
        g.claim(&format!("61.0.0.{i}"), "rich");
    }
    for i in 0..9 {
        g.claim(&format!("{}.0.0.3", 70 + i), "rich");
        g.claim(&format!("{}.0.0.4", 70 + i), "filler");
    }
    let ranks = g.ranking(Window::All);
    assert_eq!(
        ranks,
        [
            ("rich".to_string(), vec![61], 12),
            ("holder".to_string(), vec![60], 1),
            ("many".to_string(), vec![], 12),
            ("rival".to_string(), vec![], 12),
        ],
        "filler (9 addresses, no block) is not ranked"
    );
}

#[test]
fn score_lists_every_player_in_every_block_ties_included() {
    let g = Game::new();
    g.claim("80.0.0.1", "a");
    g.claim("80.0.0.2", "b");
    g.claim("81.0.0.1", "b");
    g.claim("81.0.0.2", "b");
    g.claim("81.0.0.3", "c");
    let score = g.s().score_compat(Window::All).unwrap().score;
    assert_eq!(score["a"], [(80, 1)]);
    assert_eq!(score["b"], [(80, 1), (81, 2)]);
    assert_eq!(score["c"], [(81, 1)]);
    g.clock.advance(2 * HOUR);
    assert!(g.s().score_compat(Window::Hour).unwrap().score.is_empty());
}

#[test]
fn score_json_is_the_score_serialized_in_name_order() {
    let g = Game::new();
    // Names whose byte order differs from a case-blind or numeric one, over
    // blocks claimed out of order, so sorting by name must keep block order.
    for (ip, nick) in [
        ("90.0.0.1", "b"),
        ("12.0.0.1", "b"),
        ("200.0.0.1", "B"),
        ("90.0.0.2", "a10"),
        ("12.0.0.2", "a9"),
        ("12.0.0.3", "a9"),
        ("7.0.0.1", "b"),
        ("90.0.0.3", "_x"),
    ] {
        g.claim(ip, nick);
    }
    for w in [Window::All, Window::Hour] {
        let score = g.s().score_compat(w).unwrap();
        let expected = serde_json::to_string(&score).unwrap();
        assert_eq!(&*g.s().json(Query::Score(w)).unwrap(), expected);
        let names: Vec<&str> = score.score.keys().map(String::as_str).collect();
        assert_eq!(names, ["B", "_x", "a10", "a9", "b"]);
        assert_eq!(score.score["b"], [(7, 1), (12, 1), (90, 1)]);
    }
}

#[test]
fn times_of_the_data_move_only_when_it_changes() {
    let g = Game::new();
    g.claim("82.0.0.1", "a");
    let at = |w| g.s().blocks(w).unwrap().updated_at;
    let (hour, all) = (at(Window::Hour), at(Window::All));
    g.clock.advance(HOUR / 2);
    g.s().health().unwrap();
    g.claim("82.0.0.1", "a");
    assert_eq!(
        (at(Window::Hour), at(Window::All)),
        (hour, all.clone()),
        "nothing changed"
    );
    g.clock.advance(HOUR);
    assert_eq!(
        at(Window::Hour),
        "2023-11-14T23:13:20.000000Z",
        "the hour changed when the claim left it, exactly"
    );
    assert_eq!(at(Window::All), all, "all did not change");
}

#[test]
fn a_top_list_is_the_first_rows_of_the_whole_ranking() {
    let g = Game::new();
    // 40 players who each hold one block, with addresses from 1 to 4 (many
    // ties on blocks and addresses, broken by name), and 3 with two blocks.
    for p in 0..40u32 {
        let nick = format!("p{:02}{}", (p * 7) % 40, ["a", "B"][p as usize % 2]);
        for a in 0..=(p % 4) {
            g.claim(&format!("{}.0.0.{}", 100 + p, a + 1), &nick);
        }
    }
    for p in 0..3u32 {
        for b in [200 + 2 * p, 201 + 2 * p] {
            g.claim(&format!("{b}.0.0.1"), &format!("two{p}"));
        }
    }
    for w in [Window::Hour, Window::All] {
        let whole = g.s().ranks(w).unwrap();
        assert_eq!(whole.ranked, 43);
        assert_eq!(whole.rankings.len(), 43);
        for limit in [0, 1, 2, 3, 5, 17, 42, 43, 44, 1000] {
            let top = g.s().ranks_top(w, limit).unwrap();
            assert_eq!(top.ranked, 43, "limit {limit}");
            let names = |r: &[cti_core::render::RankJson]| {
                r.iter()
                    .map(|r| (r.rank, r.name.clone()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(
                names(&top.rankings),
                names(&whole.rankings[..limit.min(43)]),
                "limit {limit}"
            );
        }
        // What the C ABI serves, cached per limit.
        let json = |limit| g.s().json(Query::Ranks(w, limit)).unwrap();
        let top5: serde_json::Value = serde_json::from_str(&json(5)).unwrap();
        assert_eq!(top5["rankings"].as_array().unwrap().len(), 5);
        assert_eq!(top5["ranked"], 43);
        let all: serde_json::Value = serde_json::from_str(&json(cti_core::RANKS_ALL)).unwrap();
        let rows = |v: &serde_json::Value| v["rankings"].as_array().unwrap().clone();
        assert_eq!(rows(&all)[..5], rows(&top5)[..]);
        assert_eq!(rows(&all).len(), 43);
    }
}
