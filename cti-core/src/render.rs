//! JSON renderings of the game state, shared by every frontend through the C ABI.

use crate::aggregates::{Leader, PlayerId, Standing, BLOCKS};
use crate::store::ClaimRow;
use crate::view::{Change, View};
use crate::window::{rfc3339, sec_nsec, Window};
use crate::writer::Claimed;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

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

    fn from_row(name: &str, c: &ClaimRow) -> Self {
        let ip = Ipv4Addr::from(c.ip);
        ClaimJson {
            ip: ip.to_string(),
            name: name.to_string(),
            block: ip.octets()[0],
            claimed_at: rfc3339(c.at),
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

impl BlockJson {
    fn new(view: &View, block: u8, l: &Leader) -> Self {
        BlockJson {
            block,
            holder: l.holder.map(|p| view.name(p).to_string()),
            tied: l.tied,
            claims: l.count,
            total: l.total,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct BlocksJson {
    pub window: &'static str,
    /// When this window's data last changed.
    pub updated_at: String,
    pub blocks: Vec<BlockJson>,
}

pub fn blocks(view: &View, window: Window) -> BlocksJson {
    BlocksJson {
        window: window.name(),
        updated_at: rfc3339(view.changed_at(Some(window))),
        blocks: view
            .leaders_of(window)
            .map(|(b, l)| BlockJson::new(view, b, &l))
            .collect(),
    }
}

#[derive(Debug, Serialize)]
pub struct RankJson {
    pub rank: usize,
    pub name: String,
    pub blocks: Vec<u8>,
    /// Addresses owned in the window, in every block.
    pub claims: u64,
}

#[derive(Debug, Serialize)]
pub struct RanksJson {
    pub window: &'static str,
    pub updated_at: String,
    /// Rows in the whole ranking: `rankings` holds the first of them.
    pub ranked: usize,
    pub rankings: Vec<RankJson>,
}

/// Every holder and every player with at least 10 addresses, by blocks held,
/// then addresses owned, then name in byte order (as ipv4.games ranks); the
/// first `limit` of them.
pub fn ranks(view: &View, window: Window, limit: usize) -> RanksJson {
    let (standings, ranked) = view.aggregates().top_standings(window, limit);
    // Names looked up once, not at every comparison.
    let mut rows: Vec<(Standing, &str)> = standings
        .into_iter()
        .map(|s| {
            let name = view.name(s.player);
            (s, name)
        })
        .collect();
    let order = |(a, an): &(Standing, &str), (b, bn): &(Standing, &str)| {
        b.blocks
            .len()
            .cmp(&a.blocks.len())
            .then(b.claims.cmp(&a.claims))
            .then_with(|| an.as_bytes().cmp(bn.as_bytes()))
    };
    // Past the holders, the rows are those with the most addresses and
    // their ties: a selection and a sort of the first `limit` of them.
    if limit < rows.len() {
        rows.select_nth_unstable_by(limit, order);
        rows.truncate(limit);
    }
    rows.sort_unstable_by(order);
    let rankings = rows
        .into_iter()
        .enumerate()
        .map(|(i, (s, name))| RankJson {
            rank: i + 1,
            name: name.to_string(),
            blocks: s.blocks,
            claims: s.claims,
        })
        .collect();
    RanksJson {
        window: window.name(),
        updated_at: rfc3339(view.changed_at(Some(window))),
        ranked,
        rankings,
    }
}

#[derive(Debug, Serialize)]
pub struct RecentJson {
    pub updated_at: String,
    pub claims: Vec<ClaimJson>,
}

/// The newest current claims, one per address, newest first.
pub fn recent(view: &View, limit: usize) -> RecentJson {
    RecentJson {
        updated_at: rfc3339(view.changed_at(None)),
        claims: view
            .recent()
            .take(limit)
            .map(|c| ClaimJson::from_row(view.name(c.player), c))
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
    pub updated_at: String,
    pub blocks_held: usize,
    pub claims: u64,
    pub standing: Vec<PlaceJson>,
}

pub fn user(view: &View, window: Window, player: PlayerId) -> UserJson {
    let places = view.aggregates().places(window, player);
    UserJson {
        name: view.name(player).to_string(),
        window: window.name(),
        updated_at: rfc3339(view.changed_at(Some(window))),
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

/// `/score` of ipv4.games: every player with an address in the window, with
/// `[block, count]` for every block where they have one (clients work out
/// holders, ties and totals from this). `now` is the time of the data.
#[derive(Debug, Serialize)]
pub struct ScoreCompat {
    pub now: (i64, i64),
    pub score: BTreeMap<String, Vec<(u8, u32)>>,
}

pub fn score_compat(view: &View, window: Window) -> ScoreCompat {
    let rows = score_rows(view, window);
    let mut score: BTreeMap<String, Vec<(u8, u32)>> = BTreeMap::new();
    for (name, block, n) in rows.rows {
        score.entry(name.to_string()).or_default().push((block, n));
    }
    ScoreCompat {
        now: rows.now,
        score,
    }
}

/// What `/score` shows, taken from the view: one row per (player, block).
/// Taking it is a copy (a name is shared, not copied); the sort and the
/// serialization, which take far longer with hundreds of thousands of
/// players, run after the view's lock is released (see [`ScoreRows::to_json`]).
pub struct ScoreRows {
    now: (i64, i64),
    rows: Vec<(Arc<str>, u8, u32)>,
}

pub fn score_rows(view: &View, window: Window) -> ScoreRows {
    let mut rows = Vec::new();
    for b in 0..BLOCKS {
        for (p, n) in view.aggregates().block(b as u8).players(window) {
            rows.push((view.shared_name(p), b as u8, n));
        }
    }
    ScoreRows {
        now: sec_nsec(view.changed_at(Some(window))),
        rows,
    }
}

impl ScoreRows {
    /// The same JSON as [`ScoreCompat`]'s: players in byte order of their
    /// names, each player's blocks in order.
    pub fn to_json(mut self) -> String {
        // Blocks were pushed in order, so a stable sort by name keeps them so.
        self.rows.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        to_json(&ScoreJson {
            now: self.now,
            score: ByPlayer(&self.rows),
        })
    }
}

#[derive(Serialize)]
struct ScoreJson<'a> {
    now: (i64, i64),
    score: ByPlayer<'a>,
}

/// Rows sorted by name, serialized as a map from name to `[[block, count], ..]`.
struct ByPlayer<'a>(&'a [(Arc<str>, u8, u32)]);

impl Serialize for ByPlayer<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        for player in self.0.chunk_by(|a, b| a.0 == b.0) {
            let places: Vec<(u8, u32)> = player.iter().map(|r| (r.1, r.2)).collect();
            map.serialize_entry(&*player[0].0, &places)?;
        }
        map.end()
    }
}

/// `/recent` of ipv4.games: the newest current claims, one per address,
/// `[ip as u32, nick, unix seconds]`, newest first.
#[derive(Debug, Serialize)]
pub struct RecentCompat {
    pub now: (i64, i64),
    pub recent: Vec<(u32, String, i64)>,
}

pub fn recent_compat(view: &View, limit: usize) -> RecentCompat {
    let recent = view
        .recent()
        .take(limit)
        .map(|c| (c.ip, view.name(c.player).to_string(), sec_nsec(c.at).0))
        .collect();
    RecentCompat {
        now: sec_nsec(view.changed_at(None)),
        recent,
    }
}

#[derive(Debug, Serialize)]
struct HolderJson {
    window: &'static str,
    #[serde(flatten)]
    block: BlockJson,
}

#[derive(Debug, Serialize)]
struct EventJson<'a> {
    event: u64,
    kind: &'a str,
    at: String,
    claims: Vec<ClaimJson>,
    holders: Vec<HolderJson>,
}

/// A subscriber's event: the claims a commit made visible and the
/// (window, block) leaders that changed.
pub fn event(view: &View, kind: &str, number: u64, change: &Change) -> String {
    to_json(&EventJson {
        event: number,
        kind,
        at: rfc3339(change.at),
        claims: change
            .claims
            .iter()
            .map(|f| ClaimJson::from_row(&f.name, &f.row))
            .collect(),
        holders: change
            .holders
            .iter()
            .map(|h| HolderJson {
                window: h.window.name(),
                block: BlockJson::new(view, h.block, &h.leader),
            })
            .collect(),
    })
}

/// Serializes a rendering; these types cannot fail to serialize.
pub fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value)
        .unwrap_or_else(|e| format!("{{\"error\":\"internal\",\"message\":\"{e}\"}}"))
}
