//! Address ranges (`10.0.0.0/8`, `::1/128`, or a bare address) for trusted
//! proxies and load balancers. An IPv4-mapped IPv6 address matches IPv4 ranges.

use std::net::IpAddr;
use std::str::FromStr;
use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CidrError {
    #[error("{0:?} is not an address or an address/prefix")]
    Syntax(String),
    #[error("prefix /{prefix} is too long for {addr}")]
    Prefix { addr: IpAddr, prefix: u8 },
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let syntax = || CidrError::Syntax(s.chars().take(64).collect());
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| syntax())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.len() <= 3 => {
                p.parse().map_err(|_| syntax())?
            }
            Some(_) => return Err(syntax()),
        };
        if prefix > max {
            return Err(CidrError::Prefix { addr, prefix });
        }
        Ok(Cidr { addr, prefix })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u32::from(net) as u128, 32, self.prefix)
                    == masked(u32::from(ip) as u128, 32, self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(u128::from(net), 128, self.prefix)
                    == masked(u128::from(ip), 128, self.prefix)
            }
            _ => false,
        }
    }

    /// Whether any range in `list` contains `ip`.
    pub fn any(list: &[Cidr], ip: IpAddr) -> bool {
        list.iter().any(|c| c.contains(ip))
    }
}

fn masked(bits: u128, width: u8, prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        bits >> (width - prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_matches() {
        assert!(c("10.0.0.0/8").contains("10.200.1.1".parse().unwrap()));
        assert!(!c("10.0.0.0/8").contains("11.0.0.1".parse().unwrap()));
        assert!(c("127.0.0.1").contains("127.0.0.1".parse().unwrap()));
        assert!(!c("127.0.0.1").contains("127.0.0.2".parse().unwrap()));
        assert!(c("0.0.0.0/0").contains("8.8.8.8".parse().unwrap()));
        assert!(c("::1/128").contains("::1".parse().unwrap()));
        assert!(c("2001:db8::/32").contains("2001:db8:1::5".parse().unwrap()));
        assert!(
            c("10.0.0.0/8").contains("::ffff:10.1.2.3".parse().unwrap()),
            "v4-mapped"
        );
        assert!(!c("10.0.0.0/8").contains("2001:db8::1".parse().unwrap()));
        assert_eq!(c("10.0.0.0/8").to_string(), "10.0.0.0/8");
    }

    #[test]
    fn refuses_nonsense() {
        for bad in [
            "",
            "10.0.0.0/",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/+8",
            "x/8",
            "10.0.0/8",
            "10.0.0.0/8/8",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?}");
        }
    }
}
