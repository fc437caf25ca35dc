//! Caps on what one source may hold open (connections, event streams),
//! counted per network as well as per address: one IPv6 /64 holds 2^64
//! addresses and a few hundred IPv4 addresses are cheap, so a per-address
//! cap alone lets one network take every slot. IPv4-mapped IPv6 addresses
//! (`::ffff:a.b.c.d`) count as the IPv4 address they are.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The network an address counts in: its /24 (IPv4) or its /64 (IPv6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Network {
    V4([u8; 3]),
    V6(u64),
}

impl Network {
    pub fn of(ip: IpAddr) -> Network {
        match ip.to_canonical() {
            IpAddr::V4(v4) => {
                let [a, b, c, _] = v4.octets();
                Network::V4([a, b, c])
            }
            IpAddr::V6(v6) => Network::V6((u128::from(v6) >> 64) as u64),
        }
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Network::V4([a, b, c]) => write!(f, "{a}.{b}.{c}.0/24"),
            Network::V6(top) => {
                let net = std::net::Ipv6Addr::from(u128::from(*top) << 64);
                write!(f, "{net}/64")
            }
        }
    }
}

/// Places held per key, at most `cap` for each key.
pub struct PerKey<K> {
    cap: usize,
    held: Arc<Mutex<HashMap<K, usize>>>,
}

/// One place under a key, given back when dropped.
pub struct Place<K: Hash + Eq> {
    held: Arc<Mutex<HashMap<K, usize>>>,
    key: K,
}

impl<K: Hash + Eq + Copy> PerKey<K> {
    pub fn new(cap: usize) -> PerKey<K> {
        PerKey {
            cap,
            held: Arc::default(),
        }
    }

    /// A place under `key`, or `None` when the key holds `cap` already.
    pub fn take(&self, key: K) -> Option<Place<K>> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let n = held.entry(key).or_default();
        if *n >= self.cap {
            if *n == 0 {
                held.remove(&key);
            }
            return None;
        }
        *n += 1;
        Some(Place {
            held: self.held.clone(),
            key,
        })
    }

    /// Places held under `key`.
    pub fn count(&self, key: K) -> usize {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.get(&key).copied().unwrap_or(0)
    }
}

impl<K: Hash + Eq> Drop for Place<K> {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = held.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.key);
            }
        }
    }
}

/// Which cap refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the connection cap")]
    Total,
    #[error("the cap per network (/24 or /64)")]
    Network,
    #[error("the cap per address")]
    Address,
}

impl Refused {
    pub fn label(self) -> &'static str {
        match self {
            Refused::Total => "total",
            Refused::Network => "network",
            Refused::Address => "address",
        }
    }
}

/// Open connections: in total, per network, and per address.
pub struct ConnectionCaps {
    total: Arc<Semaphore>,
    max_total: usize,
    networks: PerKey<Network>,
    addresses: PerKey<IpAddr>,
}

/// Held while a connection is open.
pub struct Slot(#[allow(dead_code)] OwnedSemaphorePermit);

/// Held while a connection counts against its source's network and address.
pub struct SourceSlot {
    _network: Place<Network>,
    _address: Place<IpAddr>,
}

impl ConnectionCaps {
    pub fn new(max_total: usize, per_network: usize, per_address: usize) -> ConnectionCaps {
        ConnectionCaps {
            total: Arc::new(Semaphore::new(max_total)),
            max_total,
            networks: PerKey::new(per_network),
            addresses: PerKey::new(per_address),
        }
    }

    /// A slot for a new connection, whoever it is from.
    pub fn open(&self) -> Result<Slot, Refused> {
        self.total
            .clone()
            .try_acquire_owned()
            .map(Slot)
            .map_err(|_| Refused::Total)
    }

    /// A slot for one more connection from `ip` (canonical first, so that
    /// `::ffff:a.b.c.d` and `a.b.c.d` are one source).
    pub fn source(&self, ip: IpAddr) -> Result<SourceSlot, Refused> {
        let ip = ip.to_canonical();
        let network = self
            .networks
            .take(Network::of(ip))
            .ok_or(Refused::Network)?;
        let address = self.addresses.take(ip).ok_or(Refused::Address)?;
        Ok(SourceSlot {
            _network: network,
            _address: address,
        })
    }

    pub fn open_connections(&self) -> usize {
        self.max_total - self.total.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks() {
        assert_eq!(Network::of(ip("10.1.2.3")), Network::of(ip("10.1.2.250")));
        assert_ne!(Network::of(ip("10.1.2.3")), Network::of(ip("10.1.3.3")));
        assert_eq!(
            Network::of(ip("::ffff:10.1.2.3")),
            Network::of(ip("10.1.2.9"))
        );
        assert_eq!(
            Network::of(ip("2001:db8:0:1::1")),
            Network::of(ip("2001:db8:0:1:ffff::2"))
        );
        assert_ne!(
            Network::of(ip("2001:db8:0:1::1")),
            Network::of(ip("2001:db8:0:2::1"))
        );
        assert_eq!(Network::of(ip("10.1.2.3")).to_string(), "10.1.2.0/24");
        assert_eq!(
            Network::of(ip("2001:db8:0:1::1")).to_string(),
            "2001:db8:0:1::/64"
        );
    }

    #[test]
    fn caps_per_address_per_network_and_in_total() {
        let caps = ConnectionCaps::new(3, 3, 2);
        let a = caps.source(ip("192.0.2.1")).unwrap();
        let _b = caps.source(ip("::ffff:192.0.2.1")).unwrap();
        assert_eq!(
            caps.source(ip("192.0.2.1")).err(),
            Some(Refused::Address),
            "the v4-mapped form is the same address"
        );
        let _c = caps.source(ip("192.0.2.2")).unwrap();
        assert_eq!(
            caps.source(ip("192.0.2.3")).err(),
            Some(Refused::Network),
            "a fourth address in the /24"
        );
        assert!(caps.source(ip("192.0.3.1")).is_ok(), "another /24");
        drop(a);
        assert!(caps.source(ip("192.0.2.3")).is_ok());
        let slots: Vec<_> = (0..3).map(|_| caps.open().unwrap()).collect();
        assert_eq!(caps.open().err(), Some(Refused::Total));
        assert_eq!(caps.open_connections(), 3);
        drop(slots);
        assert!(caps.open().is_ok());
    }

    #[test]
    fn one_ipv6_64_counts_as_one_network() {
        let caps = ConnectionCaps::new(100, 4, 2);
        let held: Vec<_> = (1..=4)
            .map(|i| caps.source(ip(&format!("2001:db8:0:7::{i:x}"))).unwrap())
            .collect();
        assert_eq!(
            caps.source(ip("2001:db8:0:7:abcd::1")).err(),
            Some(Refused::Network)
        );
        assert!(caps.source(ip("2001:db8:0:8::1")).is_ok());
        assert_eq!(caps.networks.count(Network::of(ip("2001:db8:0:7::"))), 4);
        drop(held);
        assert_eq!(caps.networks.count(Network::of(ip("2001:db8:0:7::"))), 0);
        assert!(
            caps.networks.held.lock().unwrap().is_empty(),
            "no entry left behind"
        );
    }
}
