//! JSON renderings of the game state, shared by every frontend through the C ABI.

use crate::aggregates::{PlayerId, BLOCKS};
use crate::store::Event;
use crate::window::{rfc3339, sec_nsec, Micros, Window};
use crate::writer::{Claimed, View};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

#[derive(Debug, Serialize)]
pub struct ClaimJson {
    pub ip: String,
    pub name: String,
    pub block: u8,
    pub claimed_at: String,
}

impl ClaimJson {
    pub fn from_claimed(c: &Claimed) -> Self {
        ClaimJson {
            ip: c.ip.to_string(),
            name: c.name.to_string(),
            block: c.ip.octets()[0],
            claimed_at: rfc3339(c.at),
        }
    }

    fn from_event(view: &View, e: &Event) -> Self {
        let ip = Ipv4Addr::from(e.ip);
        ClaimJson {
            ip: ip.to_string(),
            name: view.name(e.player).to_string(),
            block: ip.octets()[0],
            claimed_at: rfc3339(e.at),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct BlockJson {
    pub block: u8,
    pub holder: Option<String>,
    pub tied: bool,
    pub claims: u32,
    pub total: u64,
}

#[derive(Debug, Serialize)]
pub struct BlocksJson {
    pub window: &'static str,
    pub updated_at: String,
    pub blocks: Vec<BlockJson>,
}

pub fn blocks(view: &View, window: Window) -> BlocksJson {
    let blocks = (0..BLOCKS)
        .map(|b| {
            let l = view.aggregates.leader(window, b as u8);
            BlockJson {
                block: b as u8,
                holder: l.holder.map(|p| view.name(p).to_string()),
                tied: l.tied,
                claims: l.count,
                total: l.total,
            }
        })
        .collect();
    BlocksJson {
        window: window.name(),
        updated_at: rfc3339(view.updated_at),
        blocks,
    }
}

#[derive(Debug, Serialize)]
pub struct RankJson {
    pub rank: usize,
    pub name: String,
    pub blocks: Vec<u8>,
    pub claims: u64,
}

#[derive(Debug, Serialize)]
pub struct RanksJson {
    pub window: &'static str,
    pub updated_at: String,
    pub rankings: Vec<RankJson>,
}

/// Blocks held, then addresses in them, then name in byte order.
pub fn ranks(view: &View, window: Window) -> RanksJson {
    let mut rows = view.aggregates.standings(window);
    rows.sort_by(|a, b| {
        b.blocks
            .len()
            .cmp(&a.blocks.len())
            .then(b.claims.cmp(&a.claims))
            .then_with(|| {
                view.name(a.player)
                    .as_bytes()
                    .cmp(view.name(b.player).as_bytes())
            })
    });
    let rankings = rows
        .into_iter()
        .enumerate()
        .map(|(i, s)| RankJson {
            rank: i + 1,
            name: view.name(s.player).to_string(),
            blocks: s.blocks,
            claims: s.claims,
        })
        .collect();
    RanksJson {
        window: window.name(),
        updated_at: rfc3339(view.updated_at),
        rankings,
    }
}

#[derive(Debug, Serialize)]
pub struct RecentJson {
    pub claims: Vec<ClaimJson>,
}

pub fn recent(view: &View, limit: usize) -> RecentJson {
    RecentJson {
        claims: view
            .recent
            .iter()
            .take(limit)
            .map(|e| ClaimJson::from_event(view, e))
            .collect(),
    }
}

#[derive(Debug, Serialize)]
pub struct PlaceJson {
    pub block: u8,
    pub rank: u32,
    pub of: u32,
    pub tied: bool,
    pub claims: u32,
}

#[derive(Debug, Serialize)]
pub struct UserJson {
    pub name: String,
    pub window: &'static str,
    pub blocks_held: usize,
    pub claims: u64,
    pub standing: Vec<PlaceJson>,
}

pub fn user(view: &View, window: Window, player: PlayerId) -> UserJson {
    let places = view.aggregates.places(window, player);
    UserJson {
        name: view.name(player).to_string(),
        window: window.name(),
        blocks_held: places.iter().filter(|p| p.rank == 1 && !p.tied).count(),
        claims: places.iter().map(|p| p.count as u64).sum(),
        standing: places
            .into_iter()
            .map(|p| PlaceJson {
                block: p.block,
                rank: p.rank,
                of: p.of,
                tied: p.tied,
                claims: p.count,
            })
            .collect(),
    }
}

/// `/score` of ipv4.games: each holder with `[block, count]` of the blocks held.
#[derive(Debug, Serialize)]
pub struct ScoreCompat {
    pub now: (i64, i64),
    pub score: BTreeMap<String, Vec<(u8, u32)>>,
}

pub fn score_compat(view: &View, window: Window, now: Micros) -> ScoreCompat {
    let mut score: BTreeMap<String, Vec<(u8, u32)>> = BTreeMap::new();
    for b in 0..BLOCKS {
        let l = view.aggregates.leader(window, b as u8);
        if let Some(p) = l.holder {
            score
                .entry(view.name(p).to_string())
                .or_default()
                .push((b as u8, l.count));
        }
    }
    ScoreCompat {
        now: sec_nsec(now),
        score,
    }
}

/// `/recent` of ipv4.games: `[ip as u32, nick, unix seconds]`, newest first.
#[derive(Debug, Serialize)]
pub struct RecentCompat {
    pub now: (i64, i64),
    pub recent: Vec<(u32, String, i64)>,
}

pub fn recent_compat(view: &View, limit: usize, now: Micros) -> RecentCompat {
    let recent = view
        .recent
        .iter()
        .take(limit)
        .map(|e| (e.ip, view.name(e.player).to_string(), sec_nsec(e.at).0))
        .collect();
    RecentCompat {
        now: sec_nsec(now),
        recent,
    }
}

/// Serializes a rendering; these types cannot fail to serialize.
pub fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value)
        .unwrap_or_else(|e| format!("{{\"error\":\"internal\",\"message\":\"{e}\"}}"))
}
