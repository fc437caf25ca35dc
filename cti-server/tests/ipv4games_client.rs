//! An ipv4.games client against cti (issue 11, item 9): after random claims
//! from many addresses (steals, repeats and ties included), it works out
//! holders, ties, totals and the leaderboard from `/score` alone, as the
//! original page does, and they must equal cti's own `/api/blocks` and
//! `/api/ranks` for the same window.

mod common;

use common::{Server, JSON};
use std::collections::{BTreeMap, HashMap};

/// A small deterministic generator (xorshift64*), so a failure replays.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

fn claim(s: &Server, ip: &str, nick: &str) {
    let r = s.get(
        &format!("/claim?name={nick}"),
        &[JSON, &format!("X-Forwarded-For: {ip}")],
    );
    assert_eq!(r.status, 200, "{ip} {nick}: {}", r.text());
}

/// One block as a client of `/score` sees it.
#[derive(Debug, PartialEq)]
struct Block {
    holder: Option<String>,
    tied: bool,
    claims: u64,
    total: u64,
}

/// Holders, ties and totals per block from `/score`: the most addresses
/// holds the block, a shared top count is a tie.
fn blocks_from_score(score: &serde_json::Value) -> Vec<Block> {
    let mut counts: Vec<Vec<(String, u64)>> = vec![Vec::new(); 256];
    for (name, held) in score["score"].as_object().unwrap() {
        for pair in held.as_array().unwrap() {
            let (block, n) = (pair[0].as_u64().unwrap(), pair[1].as_u64().unwrap());
            counts[block as usize].push((name.clone(), n));
        }
    }
    counts
        .into_iter()
        .map(|players| {
            let top = players.iter().map(|(_, n)| *n).max().unwrap_or(0);
            let leaders: Vec<&String> = players
                .iter()
                .filter(|(_, n)| *n == top && top > 0)
                .map(|(name, _)| name)
                .collect();
            Block {
                holder: (leaders.len() == 1).then(|| leaders[0].clone()),
                tied: leaders.len() > 1,
                claims: top,
                total: players.iter().map(|(_, n)| n).sum(),
            }
        })
        .collect()
}

/// The leaderboard from `/score`: blocks held, then all addresses, then
/// name; every holder and every player with at least 10 addresses.
fn ranks_from_score(score: &serde_json::Value, blocks: &[Block]) -> Vec<(String, Vec<u64>, u64)> {
    let mut held: HashMap<&str, Vec<u64>> = HashMap::new();
    for (b, block) in blocks.iter().enumerate() {
        if let Some(h) = &block.holder {
            held.entry(h.as_str()).or_default().push(b as u64);
        }
    }
    let mut rows: Vec<(String, Vec<u64>, u64)> = score["score"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, list)| {
            let addresses = list
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p[1].as_u64().unwrap())
                .sum();
            let blocks = held.get(name.as_str()).cloned().unwrap_or_default();
            (name.clone(), blocks, addresses)
        })
        .filter(|(_, blocks, addresses)| !blocks.is_empty() || *addresses >= 10)
        .collect();
    rows.sort_by(|a, b| {
        b.1.len()
            .cmp(&a.1.len())
            .then(b.2.cmp(&a.2))
            .then_with(|| a.0.as_bytes().cmp(b.0.as_bytes()))
    });
    rows
}

fn blocks_from_api(api: &serde_json::Value) -> Vec<Block> {
    api["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| Block {
            holder: b["holder"].as_str().map(str::to_string),
            tied: b["tied"].as_bool().unwrap(),
            claims: if b["holder"].is_null() && !b["tied"].as_bool().unwrap() {
                0
            } else {
                b["claims"].as_u64().unwrap()
            },
            total: b["total"].as_u64().unwrap(),
        })
        .collect()
}

fn ranks_from_api(api: &serde_json::Value) -> Vec<(String, Vec<u64>, u64)> {
    api["rankings"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, r)| {
            assert_eq!(r["rank"].as_u64(), Some(i as u64 + 1));
            let mut blocks: Vec<u64> = r["blocks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b.as_u64().unwrap())
                .collect();
            blocks.sort_unstable();
            (
                r["name"].as_str().unwrap().to_string(),
                blocks,
                r["claims"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn score_alone_gives_the_same_board_and_leaderboard() {
    let s = Server::behind_loopback_proxy();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let players = ["ann", "bob", "cy", "dee", "eve", "fay", "gus"];
    // Few addresses in few blocks: steals, repeats and ties are common.
    for _ in 0..300 {
        let ip = format!("{}.7.7.{}", 10 + rng.below(8), 1 + rng.below(7));
        claim(&s, &ip, players[rng.below(players.len() as u64) as usize]);
    }
    // A tie made sure of, and a player with ten addresses and no block.
    claim(&s, "250.0.0.1", "tie_x");
    claim(&s, "250.0.0.2", "tie_y");
    for b in 100..110 {
        claim(&s, &format!("{b}.0.0.1"), "many");
        claim(&s, &format!("{b}.0.0.2"), "blocker");
        claim(&s, &format!("{b}.0.0.3"), "blocker");
    }
    for (score_path, window) in [
        ("/score", "all"),
        ("/score/hour", "hour"),
        ("/score/day", "day"),
    ] {
        let score = s.get(score_path, &[]).json();
        let derived = blocks_from_score(&score);
        let api = blocks_from_api(&s.get(&format!("/api/blocks?window={window}"), &[]).json());
        for (b, (mine, theirs)) in derived.iter().zip(&api).enumerate() {
            assert_eq!(mine, theirs, "{score_path}: block {b}");
        }
        assert!(derived[250].tied && derived.iter().any(|b| b.holder.is_some()));
        let ranks = ranks_from_score(&score, &derived);
        assert_eq!(
            ranks,
            ranks_from_api(&s.get(&format!("/api/ranks?window={window}"), &[]).json()),
            "{score_path}"
        );
        assert!(
            ranks
                .iter()
                .any(|(name, blocks, n)| name == "many" && blocks.is_empty() && *n == 10),
            "{score_path}: a player with 10 addresses and no block is listed"
        );
    }
    let score = s.get("/score", &[]).json();
    let names: BTreeMap<&str, usize> = score["score"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_array().unwrap().len()))
        .collect();
    assert!(
        names.contains_key("tie_x") && names.contains_key("many"),
        "{names:?}"
    );
}
