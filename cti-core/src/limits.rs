//! Claim rate limits: a token bucket per client address and one per /24, and
//! smaller buckets of the same shape for claims that bring a name onto the
//! board (a name that owns nothing yet): those cost memory for as long as the
//! name owns an address, so a network may mint only a few an hour.
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

    /// A rate without a burst would admit nothing: refused rather than
    /// silently treated as a burst of one.
    pub fn validate(&self) -> Result<(), String> {
        burst_for_rate(
            "per address",
            self.per_address_per_minute,
            self.per_address_burst,
        )?;
        burst_for_rate("per /24", self.per_net24_per_minute, self.per_net24_burst)
    }
}

fn burst_for_rate(what: &str, rate: u32, burst: u32) -> Result<(), String> {
    if rate > 0 && burst == 0 {
        return Err(format!(
            "the burst {what} is 0 with a rate of {rate}: give a burst of at least 1, or a rate of 0 to turn the limit off"
        ));
    }
    Ok(())
}

/// Limits on new names (claims by a name that owns nothing yet): rates are
/// per hour; a rate of 0 turns that limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NickLimits {
    pub per_address_per_hour: u32,
    pub per_address_burst: u32,
    pub per_net24_per_hour: u32,
    pub per_net24_burst: u32,
}

impl Default for NickLimits {
    fn default() -> Self {
        NickLimits {
            per_address_per_hour: 30,
            per_address_burst: 10,
            per_net24_per_hour: 240,
            per_net24_burst: 60,
        }
    }
}

impl NickLimits {
    pub const OFF: NickLimits = NickLimits {
        per_address_per_hour: 0,
        per_address_burst: 0,
        per_net24_per_hour: 0,
        per_net24_burst: 0,
    };

    pub fn validate(&self) -> Result<(), String> {
        burst_for_rate(
            "of new names per address",
            self.per_address_per_hour,
            self.per_address_burst,
        )?;
        burst_for_rate(
            "of new names per /24",
            self.per_net24_per_hour,
            self.per_net24_burst,
        )
    }
}

const MINUTE: Micros = 60_000_000;
const HOUR: Micros = 3_600_000_000;

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
    sets_per_shard: usize,
}

impl Table {
    fn new(sets: usize) -> Table {
        Table {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(vec![[Slot::default(); WAYS]; sets / SHARDS]))
                .collect(),
            sets_per_shard: sets / SHARDS,
        }
    }

    /// Takes one token for `key` from a bucket refilled with `rate` tokens
    /// every `period`; on refusal, the microseconds until one is there.
    fn take(
        &self,
        key: u32,
        (rate, period, burst): (u32, Micros, u32),
        now: Micros,
    ) -> Result<(), Micros> {
        if rate == 0 {
            return Ok(());
        }
        let hash = (key as u64 ^ 0x9E37_79B9).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
        let (shard, set) = (
            (hash as usize) % SHARDS,
            (hash as usize / SHARDS) % self.sets_per_shard,
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
        // Millionths of a token: `rate` tokens per `period` µs is
        // rate * 1e6 / period millionths per µs.
        let elapsed = (now - slot.at).clamp(0, period.saturating_mul(full / 1_000_000 + 1)) as i128;
        let refill = elapsed * rate as i128 * 1_000_000 / period as i128;
        slot.tokens = (slot.tokens as i128 + refill).min(full as i128) as i64;
        slot.at = now;
        if slot.tokens >= 1_000_000 {
            slot.tokens -= 1_000_000;
            Ok(())
        } else {
            let missing = (1_000_000 - slot.tokens) as i128 * period as i128;
            let per_us = rate as i128 * 1_000_000;
            Err(((missing + per_us - 1) / per_us) as Micros)
        }
    }
}

/// The rate limiter of a store.
pub struct Limiter {
    limits: Mutex<(Limits, NickLimits)>,
    addresses: Table,
    nets: Table,
    nick_addresses: Table,
    nick_nets: Table,
}

/// New names are rarer than claims: smaller tables do.
const NICK_SETS: usize = SETS / 4;

impl Default for Limiter {
    fn default() -> Self {
        Limiter {
            limits: Mutex::new((Limits::default(), NickLimits::default())),
            addresses: Table::new(SETS),
            nets: Table::new(SETS),
            nick_addresses: Table::new(NICK_SETS),
            nick_nets: Table::new(NICK_SETS),
        }
    }
}

/// Which budget a refusal was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    Claims,
    NewNames,
}

impl Limiter {
    pub fn set(&self, limits: Limits) -> Result<(), String> {
        limits.validate()?;
        self.lock().0 = limits;
        Ok(())
    }

    pub fn set_nicks(&self, limits: NickLimits) -> Result<(), String> {
        limits.validate()?;
        self.lock().1 = limits;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Limits, NickLimits)> {
        self.limits.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self) -> Limits {
        self.lock().0
    }

    /// Admits one claim from `ip` at `now` (by a name new to the board when
    /// `new_name`), or says which budget ran out and how long to wait (µs).
    /// A bucket is charged only when the ones before it admitted the claim.
    pub fn admit(&self, ip: Ipv4Addr, new_name: bool, now: Micros) -> Result<(), (Budget, Micros)> {
        let (l, n) = *self.lock();
        let ip = u32::from(ip);
        if new_name {
            let refused = |wait| (Budget::NewNames, wait);
            self.nick_addresses
                .take(ip, (n.per_address_per_hour, HOUR, n.per_address_burst), now)
                .map_err(refused)?;
            self.nick_nets
                .take(
                    ip >> 8,
                    (n.per_net24_per_hour, HOUR, n.per_net24_burst),
                    now,
                )
                .map_err(refused)?;
        }
        let refused = |wait| (Budget::Claims, wait);
        self.addresses
            .take(
                ip,
                (l.per_address_per_minute, MINUTE, l.per_address_burst),
                now,
            )
            .map_err(refused)?;
        self.nets
            .take(
                ip >> 8,
                (l.per_net24_per_minute, MINUTE, l.per_net24_burst),
                now,
            )
            .map_err(refused)
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
        })
        .unwrap();
        let t = 1_000_000_000;
        for _ in 0..3 {
            assert_eq!(l.admit(ip("1.1.1.1"), false, t), Ok(()));
        }
        let wait = l.admit(ip("1.1.1.1"), false, t).unwrap_err().1;
        assert_eq!(retry_after_secs(wait), 1);
        assert_eq!(
            l.admit(ip("1.1.1.2"), false, t),
            Ok(()),
            "other addresses unaffected"
        );
        assert_eq!(
            l.admit(ip("1.1.1.1"), false, t + 1_000_000),
            Ok(()),
            "one token per second"
        );
        assert!(l.admit(ip("1.1.1.1"), false, t + 1_000_000).is_err());
    }

    #[test]
    fn net24_bucket_limits_a_whole_range() {
        let l = Limiter::default();
        l.set(Limits {
            per_net24_per_minute: 6,
            per_net24_burst: 4,
            ..Limits::OFF
        })
        .unwrap();
        let t = 5_000_000;
        for i in 0..4 {
            assert_eq!(l.admit(ip(&format!("9.9.9.{i}")), false, t), Ok(()));
        }
        let wait = l.admit(ip("9.9.9.200"), false, t).unwrap_err().1;
        assert_eq!(retry_after_secs(wait), 10, "6 per minute: one every 10 s");
        assert_eq!(
            l.admit(ip("9.9.10.1"), false, t),
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
        })
        .unwrap();
        assert_eq!(l.admit(ip("7.7.7.7"), false, 0), Ok(()));
        for _ in 0..10 {
            assert!(l.admit(ip("7.7.7.7"), false, 0).is_err());
        }
        assert_eq!(l.admit(ip("7.7.7.8"), false, 0), Ok(()));
    }

    #[test]
    fn new_names_have_their_own_smaller_budget() {
        let l = Limiter::default();
        l.set(Limits::OFF).unwrap();
        l.set_nicks(NickLimits {
            per_address_per_hour: 2,
            per_address_burst: 2,
            per_net24_per_hour: 0,
            per_net24_burst: 0,
        })
        .unwrap();
        assert_eq!(l.admit(ip("5.5.5.5"), true, 0), Ok(()));
        assert_eq!(l.admit(ip("5.5.5.5"), true, 0), Ok(()));
        let (budget, wait) = l.admit(ip("5.5.5.5"), true, 0).unwrap_err();
        assert_eq!(budget, Budget::NewNames);
        assert_eq!(
            retry_after_secs(wait),
            1800,
            "2 an hour: one every 30 minutes"
        );
        assert_eq!(
            l.admit(ip("5.5.5.5"), false, 0),
            Ok(()),
            "known names still claim"
        );
    }

    #[test]
    fn a_rate_without_a_burst_is_refused() {
        let l = Limiter::default();
        let bad = Limits {
            per_address_burst: 0,
            ..Limits::default()
        };
        assert!(l.set(bad).unwrap_err().contains("burst"));
        assert_eq!(l.get(), Limits::default(), "nothing changed");
    }

    #[test]
    fn off_admits_everything() {
        let l = Limiter::default();
        l.set(Limits::OFF).unwrap();
        for _ in 0..10_000 {
            assert_eq!(l.admit(ip("3.3.3.3"), false, 0), Ok(()));
        }
    }

    #[test]
    fn memory_stays_fixed_under_a_flood_of_distinct_addresses() {
        let l = Limiter::default();
        let before = SETS * WAYS * 2;
        for i in 0..2_000_000u32 {
            let _ = l.admit(
                Ipv4Addr::from(i.wrapping_mul(2_654_435_761)),
                false,
                i as i64,
            );
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
