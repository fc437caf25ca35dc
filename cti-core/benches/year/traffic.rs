//! The simulated year's traffic: who claims which address, and when.
//!
//! Every claim is a pure function of its index and the seed, so any thread
//! may generate any claim and a run is reproducible. The shape:
//!
//! - **Players** are drawn Zipf-like (exponent 1) from `--players` names: the
//!   top few thousand make about two thirds of the claims, the long tail a
//!   handful each, so names keep arriving for weeks and then settle.
//! - **Locality.** Addresses live in a pool of /16s (a few hot ones crowded
//!   by many players), of which 64 /24s each are in use. Each player owns a
//!   footprint there, a run of addresses in one /16 sized to the claims the
//!   player makes (about [`REUSE`] claims per address over the run) and
//!   growing over the run, so distinct addresses keep growing slowly while
//!   most claims are re-claims. Footprints overlap: neighbours steal.
//! - **Steals and scans.** Some claims land in another player's footprint,
//!   some anywhere in the claimant's /16, a few anywhere in public IPv4.
//! - **Time.** Claims are spread over the hours with a daily cycle, busier
//!   weekends, and burst hours (4 to 10 times busier) in which one heavy
//!   player sweeps a whole /16 of the pool.

use std::net::Ipv4Addr;

pub const SEC: i64 = 1_000_000;
pub const HOUR: i64 = 3600 * SEC;
pub const DAY: i64 = 24 * HOUR;
/// The simulated year starts on Monday 2025-01-06, 00:00 UTC.
pub const T0: i64 = 1_736_121_600 * SEC;

/// /16s in the pool where players own footprints.
const POOL: usize = 256;
/// /24s in use in each /16 of the pool.
const USED_24S: usize = 64;
/// Addresses in use in each /16 of the pool.
const USED: u32 = (USED_24S * 256) as u32;
/// Claims per footprint address over the whole run.
const REUSE: f64 = 25.0;
/// Burst hours are swept by one of this many top players.
const BURSTERS: u64 = 200;
/// Chance per mille that an hour is a burst hour.
const BURST_PER_MILLE: u64 = 25;
/// First octets of the random scans: public unicast /8s.
fn public_first(x: u64) -> u8 {
    const SKIP: [u8; 3] = [0, 10, 127];
    let mut a = (1 + x % 223) as u8;
    while SKIP.contains(&a) {
        a += 1;
    }
    a
}

/// splitmix64: a small, good-enough mixer for a reproducible benchmark.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64, stream: u64) -> Rng {
        Rng(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One hour of the run: claims up to its end, and its burst if any.
struct Hour {
    end: u64,
    burst: Option<Burst>,
}

/// A burst hour: `player` sweeps the used addresses of pool /16 `net`, making
/// `share` of the hour's claims.
#[derive(Clone, Copy)]
struct Burst {
    player: u32,
    net: u16,
    share: f64,
}

/// A /16 of the pool: `a.b` and the third octets in use.
struct Net16 {
    prefix: u32,
    used: [u8; USED_24S],
}

impl Net16 {
    /// The `u`-th used address (wrapping).
    fn address(&self, u: u32) -> u32 {
        let u = u % USED;
        self.prefix | u32::from(self.used[(u >> 8) as usize]) << 8 | (u & 255)
    }
}

/// Where a player claims: a run of used addresses in one /16 of the pool.
struct Territory {
    net: u16,
    start: u32,
    size: u32,
}

/// A claim to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub ip: Ipv4Addr,
    /// Rank of the claimant (0 is the busiest).
    pub player: u32,
}

pub struct Traffic {
    total: u64,
    seed: u64,
    hours: Vec<Hour>,
    players: Zipf,
    names: Vec<String>,
    territories: Vec<Territory>,
    pool: Vec<Net16>,
}

/// Ranks drawn with probability proportional to `1 / (rank + 1)^s`.
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Zipf {
        let mut acc = 0.0;
        let mut cdf: Vec<f64> = (0..n)
            .map(|r| {
                acc += 1.0 / ((r + 1) as f64).powf(s);
                acc
            })
            .collect();
        cdf.iter_mut().for_each(|c| *c /= acc);
        Zipf { cdf }
    }

    fn sample(&self, u: f64) -> u32 {
        self.cdf
            .partition_point(|c| *c <= u)
            .min(self.cdf.len() - 1) as u32
    }

    fn share(&self, rank: usize) -> f64 {
        self.cdf[rank] - rank.checked_sub(1).map_or(0.0, |r| self.cdf[r])
    }
}

impl Traffic {
    pub fn new(total: u64, days: u32, players: usize, seed: u64) -> Traffic {
        let zipf = Zipf::new(players, 1.0);
        let pool = make_pool(seed);
        let nets = Zipf::new(POOL, 0.9);
        let territories = (0..players)
            .map(|r| {
                let mut rng = Rng::new(seed ^ 0x7e55, r as u64);
                let size = (total as f64 * zipf.share(r) / REUSE).clamp(2.0, USED as f64);
                Territory {
                    net: nets.sample(rng.unit()) as u16,
                    start: rng.below(u64::from(USED)) as u32,
                    size: size as u32,
                }
            })
            .collect();
        Traffic {
            total,
            seed,
            hours: make_hours(total, days, seed),
            names: (0..players).map(|r| name(r, seed)).collect(),
            players: zipf,
            territories,
            pool,
        }
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn name(&self, player: u32) -> &str {
        &self.names[player as usize]
    }

    pub fn hours(&self) -> usize {
        self.hours.len()
    }

    /// Claims made before the end of hour `h` (0-based).
    pub fn end_of_hour(&self, h: usize) -> u64 {
        self.hours[h.min(self.hours.len() - 1)].end
    }

    fn start_of_hour(&self, h: usize) -> u64 {
        h.checked_sub(1).map_or(0, |p| self.hours[p].end)
    }

    fn hour_of(&self, i: u64) -> usize {
        self.hours.partition_point(|h| h.end <= i)
    }

    /// When claim `i` is made: its hour's claims are evenly spread over it.
    pub fn time_of(&self, i: u64) -> i64 {
        let h = self.hour_of(i).min(self.hours.len() - 1);
        let (start, end) = (self.start_of_hour(h), self.hours[h].end);
        let into = (i - start) as i128 * HOUR as i128 / (end - start).max(1) as i128;
        T0 + h as i64 * HOUR + into as i64
    }

    /// Burst hours of the run.
    pub fn burst_hours(&self) -> usize {
        self.hours.iter().filter(|h| h.burst.is_some()).count()
    }

    pub fn claim(&self, i: u64) -> Claim {
        let h = self.hour_of(i).min(self.hours.len() - 1);
        let mut rng = Rng::new(self.seed, i);
        if let Some(b) = self.hours[h].burst {
            if rng.unit() < b.share {
                let swept = (i - self.start_of_hour(h)) as u32;
                let ip = self.pool[b.net as usize].address(swept);
                return Claim {
                    ip: ip.into(),
                    player: b.player,
                };
            }
        }
        let player = self.players.sample(rng.unit());
        // Footprints grow from a fifth of their size to all of it.
        let grown = 0.2 + 0.8 * i as f64 / self.total as f64;
        let ip = match rng.below(1000) {
            0..850 => self.in_footprint(player, grown, &mut rng),
            850..930 => {
                let victim = self.players.sample(rng.unit());
                self.in_footprint(victim, grown, &mut rng)
            }
            930..980 => {
                let net = &self.pool[self.territories[player as usize].net as usize];
                net.address(rng.below(u64::from(USED)) as u32)
            }
            _ => u32::from(public_first(rng.next())) << 24 | (rng.next() as u32 & 0x00ff_ffff),
        };
        Claim {
            ip: ip.into(),
            player,
        }
    }

    fn in_footprint(&self, player: u32, grown: f64, rng: &mut Rng) -> u32 {
        let t = &self.territories[player as usize];
        let size = ((t.size as f64 * grown) as u64).max(1);
        self.pool[t.net as usize].address(t.start + rng.below(size) as u32)
    }
}

/// The pool's /16s, spread over the public /8s, with their used /24s.
fn make_pool(seed: u64) -> Vec<Net16> {
    let mut rng = Rng::new(seed ^ 0x9001, 0);
    let mut seen = std::collections::HashSet::new();
    let mut pool = Vec::with_capacity(POOL);
    while pool.len() < POOL {
        let prefix = u32::from(public_first(rng.next())) << 24 | (rng.below(256) as u32) << 16;
        if !seen.insert(prefix) {
            continue;
        }
        let mut thirds: Vec<u8> = (0..=255).collect();
        for i in 0..USED_24S {
            let j = i + rng.below((256 - i) as u64) as usize;
            thirds.swap(i, j);
        }
        let mut used = [0u8; USED_24S];
        used.copy_from_slice(&thirds[..USED_24S]);
        pool.push(Net16 { prefix, used });
    }
    pool
}

/// Claims per hour: a daily cycle peaking mid-afternoon UTC, weekends a
/// quarter busier, and burst hours.
fn make_hours(total: u64, days: u32, seed: u64) -> Vec<Hour> {
    let n = days as usize * 24;
    let shapes: Vec<(f64, Option<Burst>)> = (0..n)
        .map(|h| {
            let (hod, dow) = ((h % 24) as f64, (h / 24) % 7);
            let daily = 1.0 + 0.5 * ((hod - 9.0) / 24.0 * std::f64::consts::TAU).sin();
            let weekend = if dow >= 5 { 1.25 } else { 1.0 };
            let mut rng = Rng::new(seed ^ 0xb0b, h as u64);
            // The first two hours are the calm baseline: no burst.
            let burst = (h >= 2 && rng.below(1000) < BURST_PER_MILLE).then(|| {
                let times = 4 + rng.below(7);
                Burst {
                    player: rng.below(BURSTERS) as u32,
                    net: rng.below(POOL as u64) as u16,
                    share: (times - 1) as f64 / times as f64,
                }
            });
            let times = burst.map_or(1.0, |b| 1.0 / (1.0 - b.share));
            (daily * weekend * times, burst)
        })
        .collect();
    let sum: f64 = shapes.iter().map(|s| s.0).sum();
    let mut acc = 0.0;
    shapes
        .into_iter()
        .map(|(w, burst)| {
            acc += w;
            Hour {
                end: ((total as f64 * acc / sum).round() as u64).min(total),
                burst,
            }
        })
        .collect()
}

/// A nickname for rank `r`: a word or two, a separator and the rank in base
/// 36. Unique: only the separator is punctuation, so the rank can be read back.
fn name(r: usize, seed: u64) -> String {
    const WORDS: [&str; 24] = [
        "neo", "byte", "void", "root", "hax", "pwn", "Kilo", "zed", "Nyx", "owo", "sudo", "Flux",
        "bit", "IPv4", "mesh", "grid", "Lain", "core", "dns", "arp", "Hex", "ping", "tcp", "ttl",
    ];
    const SEPS: [&str; 5] = ["_", "-", ".", "^", ":"];
    let mut rng = Rng::new(seed ^ 0x4e1c, r as u64);
    let mut s = String::new();
    for _ in 0..1 + rng.below(2) {
        s.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
    }
    s.push_str(SEPS[rng.below(SEPS.len() as u64) as usize]);
    s.push_str(&radix36(r));
    s
}

fn radix36(mut n: usize) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[n % 36]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// What the traffic holds, counted by generating every claim (no store):
/// for `--traffic-only`.
pub fn describe(t: &Traffic) -> String {
    let mut addresses = std::collections::HashSet::new();
    let mut players = vec![0u64; t.names.len()];
    for i in 0..t.total {
        let c = t.claim(i);
        addresses.insert(u32::from(c.ip));
        players[c.player as usize] += 1;
    }
    let seen = players.iter().filter(|n| **n > 0).count();
    let mut by_count = players.clone();
    by_count.sort_unstable_by(|a, b| b.cmp(a));
    let top = |n: usize| by_count.iter().take(n).sum::<u64>() as f64 / t.total.max(1) as f64;
    format!(
        "traffic: {} claims, {} distinct addresses ({:.1} claims each), {} of {} names used; \
         top 100 make {:.0}%, top 3000 {:.0}% of the claims; {} burst hours of {}\n",
        t.total,
        addresses.len(),
        t.total as f64 / addresses.len().max(1) as f64,
        seen,
        t.names.len(),
        100.0 * top(100),
        100.0 * top(3000),
        t.burst_hours(),
        t.hours()
    )
}
