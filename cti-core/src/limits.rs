//! Claim rate limits: a token bucket per client address and one per /24.
//!
//! Memory is fixed whatever the flood: buckets live in a set-associative table
//! (a hash picks a set of `WAYS` slots); a new address takes the slot whose
//! bucket has been idle longest, which is the one most nearly full anyway.
//! An attacker churning millions of addresses can thus push out other
//! addresses' buckets, but never grows memory; the /24 buckets, far fewer,
//! still hold such floods back.

use crate::window::Micros;
use std::net::Ipv4Addr;
use std::sync::Mutex;

/// Rates and bursts; a rate of 0 turns that limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Claims per minute refilled into each address's bucket.
    pub per_address_per_minute: u32,
    /// Claims an address may make at once.
    pub per_address_burst: u32,
    /// Claims per minute refilled into each /24's bucket.
    pub per_net24_per_minute: u32,
    /// Claims a /24 may make at once (a player may well own a whole /24).
    pub per_net24_burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            per_address_per_minute: 60,
            per_address_burst: 10,
            per_net24_per_minute: 1200,
            per_net24_burst: 512,
        }
    }
}

impl Limits {
    pub const OFF: Limits = Limits {
        per_address_per_minute: 0,
        per_address_burst: 0,
        per_net24_per_minute: 0,
        per_net24_burst: 0,
    };
}

const SETS: usize = 1 << 14;
const WAYS: usize = 4;
const SHARDS: usize = 64;

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// Address (or /24 prefix) + 1; 0 marks an empty slot.
    key: u64,
    /// Tokens in millionths, so that refills are exact integers.
    tokens: i64,
    at: Micros,
}

/// One level of buckets (addresses, or /24s).
struct Table {
    shards: Vec<Mutex<Vec<[Slot; WAYS]>>>,
}

impl Table {
    fn new() -> Table {
        Table {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(vec![[Slot::default(); WAYS]; SETS / SHARDS]))
                .collect(),
        }
    }

    /// Takes one token for `key`; on refusal, the microseconds until one is there.
    fn take(&self, key: u32, rate: u32, burst: u32, now: Micros) -> Result<(), Micros> {
        if rate == 0 {
            return Ok(());
        }
        let hash = (key as u64 ^ 0x9E37_79B9).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
        let (shard, set) = (
            (hash as usize) % SHARDS,
            (hash as usize / SHARDS) % (SETS / SHARDS),
        );
        let mut sets = self.shards[shard].lock().unwrap_or_else(|p| p.into_inner());
        let ways = &mut sets[set];
        let full = burst.max(1) as i64 * 1_000_000;
        let slot = match ways.iter().position(|s| s.key == key as u64 + 1) {
            Some(i) => &mut ways[i],
            None => {
                let oldest = (0..WAYS)
                    .min_by_key(|&i| (ways[i].key != 0, ways[i].at))
                    .unwrap_or(0);
                ways[oldest] = Slot {
                    key: key as u64 + 1,
                    tokens: full,
                    at: now,
                };
                &mut ways[oldest]
            }
        };
        // rate per minute -> millionths of a token per microsecond: rate / 60.
        let elapsed = (now - slot.at).max(0);
        slot.tokens = (slot.tokens + elapsed * rate as i64 / 60).min(full);
        slot.at = now;
        if slot.tokens >= 1_000_000 {
            slot.tokens -= 1_000_000;
            Ok(())
        } else {
            Err(((1_000_000 - slot.tokens) * 60 + rate as i64 - 1) / rate as i64)
        }
    }
}

/// The rate limiter of a store.
pub struct Limiter {
    limits: Mutex<Limits>,
    addresses: Table,
    nets: Table,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter {
            limits: Mutex::new(Limits::default()),
            addresses: Table::new(),
            nets: Table::new(),
        }
    }
}

impl Limiter {
    pub fn set(&self, limits: Limits) {
        *self.limits.lock().unwrap_or_else(|p| p.into_inner()) = limits;
    }

    pub fn get(&self) -> Limits {
        *self.limits.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits one claim from `ip` at `now`, or says how long to wait (µs).
    /// The /24 is charged only when the address itself may claim.
    pub fn admit(&self, ip: Ipv4Addr, now: Micros) -> Result<(), Micros> {
        let l = self.get();
        let ip = u32::from(ip);
        self.addresses
            .take(ip, l.per_address_per_minute, l.per_address_burst, now)?;
        self.nets
            .take(ip >> 8, l.per_net24_per_minute, l.per_net24_burst, now)
    }
}

/// Whole seconds to wait, rounded up, as `Retry-After` wants them.
pub fn retry_after_secs(wait: Micros) -> u32 {
    ((wait + 999_999) / 1_000_000).clamp(1, u32::MAX as i64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn address_bucket_allows_a_burst_then_refills_at_the_rate() {
        let l = Limiter::default();
        l.set(Limits {
            per_address_per_minute: 60,
            per_address_burst: 3,
            ..Limits::OFF
        });
        let t = 1_000_000_000;
        for _ in 0..3 {
            assert_eq!(l.admit(ip("1.1.1.1"), t), Ok(()));
        }
        let wait = l.admit(ip("1.1.1.1"), t).unwrap_err();
        assert_eq!(retry_after_secs(wait), 1);
        assert_eq!(
            l.admit(ip("1.1.1.2"), t),
            Ok(()),
            "other addresses unaffected"
        );
        assert_eq!(
            l.admit(ip("1.1.1.1"), t + 1_000_000),
            Ok(()),
            "one token per second"
        );
        assert!(l.admit(ip("1.1.1.1"), t + 1_000_000).is_err());
    }

    #[test]
    fn net24_bucket_limits_a_whole_range() {
        let l = Limiter::default();
        l.set(Limits {
            per_net24_per_minute: 6,
            per_net24_burst: 4,
            ..Limits::OFF
        });
        let t = 5_000_000;
        for i in 0..4 {
            assert_eq!(l.admit(ip(&format!("9.9.9.{i}")), t), Ok(()));
        }
        let wait = l.admit(ip("9.9.9.200"), t).unwrap_err();
        assert_eq!(retry_after_secs(wait), 10, "6 per minute: one every 10 s");
        assert_eq!(
            l.admit(ip("9.9.10.1"), t),
            Ok(()),
            "the next /24 is separate"
        );
    }

    #[test]
    fn refused_address_does_not_spend_the_net24_budget() {
        let l = Limiter::default();
        l.set(Limits {
            per_address_per_minute: 1,
            per_address_burst: 1,
            per_net24_per_minute: 1,
            per_net24_burst: 2,
        });
        assert_eq!(l.admit(ip("7.7.7.7"), 0), Ok(()));
        for _ in 0..10 {
            assert!(l.admit(ip("7.7.7.7"), 0).is_err());
        }
        assert_eq!(l.admit(ip("7.7.7.8"), 0), Ok(()));
    }

    #[test]
    fn off_admits_everything() {
        let l = Limiter::default();
        l.set(Limits::OFF);
        for _ in 0..10_000 {
            assert_eq!(l.admit(ip("3.3.3.3"), 0), Ok(()));
        }
    }

    #[test]
    fn memory_stays_fixed_under_a_flood_of_distinct_addresses() {
        let l = Limiter::default();
        let before = SETS * WAYS * 2;
        for i in 0..2_000_000u32 {
            let _ = l.admit(Ipv4Addr::from(i.wrapping_mul(2_654_435_761)), i as i64);
        }
        // The tables are preallocated and never grow: count the slots.
        let slots: usize = [&l.addresses, &l.nets]
            .iter()
            .map(|t| {
                t.shards
                    .iter()
                    .map(|s| s.lock().unwrap().len() * WAYS)
                    .sum::<usize>()
            })
            .sum();
        assert_eq!(slots, before);
    }
}
