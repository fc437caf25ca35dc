//! Client addresses: only IPv4 can claim; `::ffff:a.b.c.d` is the IPv4 address `a.b.c.d`.

use std::net::{IpAddr, Ipv4Addr};
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AddrError {
    #[error("{0:?} is not an IP address")]
    Invalid(String),
    #[error("{0} is an IPv6 address: only IPv4 addresses can be claimed")]
    NotIpv4(String),
}

/// Parses a client address as text and returns the IPv4 address that claims.
pub fn parse_client(text: &str) -> Result<Ipv4Addr, AddrError> {
    let ip: IpAddr = text
        .parse()
        .map_err(|_| AddrError::Invalid(text.chars().take(64).collect()))?;
    claimant(ip)
}

/// The IPv4 address behind `ip`, unwrapping the v4-mapped IPv6 form.
pub fn claimant(ip: IpAddr) -> Result<Ipv4Addr, AddrError> {
    match ip {
        IpAddr::V4(v4) => Ok(v4),
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .ok_or_else(|| AddrError::NotIpv4(v6.to_string())),
    }
}

/// The `/8` block an address belongs to.
pub fn block_of(ip: Ipv4Addr) -> u8 {
    ip.octets()[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_and_mapped() {
        assert_eq!(parse_client("1.2.3.4"), Ok(Ipv4Addr::new(1, 2, 3, 4)));
        assert_eq!(
            parse_client("::ffff:9.8.7.6"),
            Ok(Ipv4Addr::new(9, 8, 7, 6))
        );
        assert_eq!(block_of(Ipv4Addr::new(200, 1, 1, 1)), 200);
    }

    #[test]
    fn refusals() {
        assert!(matches!(parse_client("::1"), Err(AddrError::NotIpv4(_))));
        assert!(matches!(
            parse_client("2001:db8::1"),
            Err(AddrError::NotIpv4(_))
        ));
        // IPv4-compatible (deprecated) form is not the mapped form.
        assert!(matches!(
            parse_client("::1.2.3.4"),
            Err(AddrError::NotIpv4(_))
        ));
        for bad in [
            "",
            "1.2.3",
            "1.2.3.4.5",
            "256.1.1.1",
            "01.2.3.4",
            "1.2.3.4 ",
            "x",
        ] {
            assert!(
                matches!(parse_client(bad), Err(AddrError::Invalid(_))),
                "{bad:?}"
            );
        }
    }
}
