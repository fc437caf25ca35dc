//! What the core's randomized and long-running tests share: the rule of a
//! block's holder written the slow and obvious way, the store's view of the
//! same, and a store on a manual clock with every limit off.

#![allow(dead_code)] // each test file takes what it needs

use cti_core::{Limits, ManualClock, NickLimits, Query, Store, Window};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

/// Holder (`None` for a tie) and total of every block with a claim.
pub type Holders = BTreeMap<u8, (Option<String>, u64)>;

/// The rule, the slow way: from each address's owner and the time of its
/// claim, the holders and totals of the blocks in `w` at `now`.
pub fn recount(owners: &HashMap<u32, (String, i64)>, w: Window, now: i64) -> Holders {
    let mut per_block: BTreeMap<u8, HashMap<&str, u32>> = BTreeMap::new();
    for (ip, (nick, at)) in owners {
        if w.length().is_none_or(|len| now - at < len) {
            *per_block
                .entry((ip >> 24) as u8)
                .or_default()
                .entry(nick)
                .or_default() += 1;
        }
    }
    per_block
        .into_iter()
        .map(|(b, counts)| {
            let total = counts.values().map(|c| *c as u64).sum();
            let top = counts.values().max().copied().unwrap_or(0);
            let leaders: Vec<_> = counts.iter().filter(|(_, c)| **c == top).collect();
            let holder = (leaders.len() == 1).then(|| leaders[0].0.to_string());
            (b, (holder, total))
        })
        .collect()
}

/// The same, as the store answers it.
pub fn holders(store: &Store, w: Window) -> Holders {
    store
        .blocks(w)
        .unwrap()
        .blocks
        .into_iter()
        .filter(|b| b.total > 0)
        .map(|b| (b.block, (b.holder, b.total)))
        .collect()
}

/// The same, from the rendering a server sends (`Store::json`): a read of
/// one window, which slides that window alone.
pub fn holders_rendered(store: &Store, w: Window) -> Holders {
    let text = store.json(Query::Blocks(w)).unwrap();
    let board: serde_json::Value = serde_json::from_str(&text).unwrap();
    let number = |v: &serde_json::Value| v.as_u64().unwrap();
    board["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| number(&b["total"]) > 0)
        .map(|b| {
            let holder = b["holder"].as_str().map(str::to_string);
            (number(&b["block"]) as u8, (holder, number(&b["total"])))
        })
        .collect()
}

/// The store at `path` on `clock`, with claim limits and limits on new
/// names off.
pub fn open_unlimited(path: &Path, clock: &Arc<ManualClock>) -> Store {
    let store = Store::open_with_clock(path, clock.clone()).unwrap();
    store.set_limits(Limits::OFF).unwrap();
    store.set_nick_limits(NickLimits::OFF).unwrap();
    store
}
