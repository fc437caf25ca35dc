//! Which address made a request: the peer the transport vouches for, unless
//! that peer is a trusted proxy, in which case `Forwarded` / `X-Forwarded-For`
//! are read from the right, skipping trusted hops, and the first untrusted hop
//! is the client. Headers from anyone else are ignored (they are free to lie).

use crate::cidr::Cidr;
use crate::error::ApiError;
use hyper::{HeaderMap, StatusCode};
use std::net::{IpAddr, Ipv4Addr};

pub fn resolve(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[Cidr]) -> Option<IpAddr> {
    let peer = peer?;
    if !Cidr::any(trusted, peer) {
        return Some(peer);
    }
    let hops = forwarded_hops(headers);
    if hops.is_empty() {
        return Some(peer);
    }
    // Right to left: the nearest hop first. An unparsable hop where the client
    // should be means the client is unknown: better no address than a proxy's.
    let mut client = peer;
    for hop in hops.iter().rev() {
        match hop {
            Some(ip) => {
                client = *ip;
                if !Cidr::any(trusted, *ip) {
                    return Some(*ip);
                }
            }
            None => return None,
        }
    }
    Some(client)
}

/// `::ffff:a.b.c.d` is shown (and claims) as `a.b.c.d`.
pub fn canonical(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(ip.to_string(), |v4| v4.to_string()),
        v4 => v4.to_string(),
    }
}

/// The client's IPv4 address (unwrapping the v4-mapped form), or the error
/// that tells why there is none.
pub fn client_ipv4(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trusted: &[Cidr],
) -> Result<Ipv4Addr, ApiError> {
    match resolve(peer, headers, trusted).ok_or_else(no_address)? {
        IpAddr::V4(v4) => Ok(v4),
        IpAddr::V6(v6) => v6.to_ipv4_mapped().ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "not_ipv4",
                format!("IPv4 is needed: you came from the IPv6 address {v6}."),
            )
        }),
    }
}

pub fn no_address() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "no_client_address",
        "This connection carries no client address (a load balancer health check), so it cannot claim.",
    )
}

/// All hops, left to right, from `Forwarded` (`for=`) if present, else
/// `X-Forwarded-For`. `None` marks a hop that is not an IP address.
fn forwarded_hops(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let forwarded: Vec<_> = headers
        .get_all("forwarded")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if !forwarded.is_empty() {
        return forwarded
            .iter()
            .flat_map(|v| v.split(','))
            .map(|element| {
                element
                    .split(';')
                    .filter_map(|pair| pair.trim().split_once('='))
                    .find(|(k, _)| k.eq_ignore_ascii_case("for"))
                    .and_then(|(_, v)| parse_node(v))
            })
            .collect();
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|h| h.trim().parse().ok())
        .collect()
}

/// A `Forwarded` node: `1.2.3.4`, `"1.2.3.4:80"`, `"[2001:db8::1]:80"`.
fn parse_node(v: &str) -> Option<IpAddr> {
    let v = v.trim().trim_matches('"');
    if let Some(rest) = v.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    v.parse()
        .ok()
        .or_else(|| v.rsplit_once(':').and_then(|(a, _)| a.parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_says() {
        let h = headers(&[("x-forwarded-for", "9.9.9.9")]);
        assert_eq!(resolve(ip("1.1.1.1"), &h, &[]), ip("1.1.1.1"));
    }

    #[test]
    fn trusted_proxy_gives_the_rightmost_untrusted_hop() {
        let trusted = ["10.0.0.0/8".parse().unwrap()];
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 5.5.5.5, 10.0.0.7")]);
        assert_eq!(
            resolve(ip("10.0.0.1"), &h, &trusted),
            ip("5.5.5.5"),
            "6.6.6.6 is spoofable"
        );
        let h = headers(&[(
            "forwarded",
            "for=6.6.6.6, for=\"[2001:db8::1]:443\";proto=https",
        )]);
        assert_eq!(resolve(ip("10.0.0.1"), &h, &trusted), ip("2001:db8::1"));
        let h = headers(&[("forwarded", "for=\"5.5.5.5:1234\"")]);
        assert_eq!(resolve(ip("10.0.0.1"), &h, &trusted), ip("5.5.5.5"));
        assert_eq!(
            resolve(ip("10.0.0.1"), &HeaderMap::new(), &trusted),
            ip("10.0.0.1")
        );
        let h = headers(&[("x-forwarded-for", "garbage, 10.0.0.9")]);
        assert_eq!(
            resolve(ip("10.0.0.1"), &h, &trusted),
            None,
            "unknown, not the proxy"
        );
        let h = headers(&[("x-forwarded-for", "10.0.0.9")]);
        assert_eq!(
            resolve(ip("10.0.0.1"), &h, &trusted),
            ip("10.0.0.9"),
            "an internal client"
        );
    }

    #[test]
    fn no_peer_no_client() {
        assert_eq!(resolve(None, &HeaderMap::new(), &[]), None);
        assert!(client_ipv4(None, &HeaderMap::new(), &[]).is_err());
    }

    #[test]
    fn ipv4_only() {
        assert_eq!(canonical("::ffff:1.2.3.4".parse().unwrap()), "1.2.3.4");
        assert_eq!(canonical("::1".parse().unwrap()), "::1");
        let v4 = |s: &str| client_ipv4(ip(s), &HeaderMap::new(), &[]);
        assert_eq!(v4("::ffff:1.2.3.4").unwrap(), Ipv4Addr::new(1, 2, 3, 4));
        assert_eq!(v4("5.6.7.8").unwrap(), Ipv4Addr::new(5, 6, 7, 8));
        assert_eq!(v4("2001:db8::1").unwrap_err().code, "not_ipv4");
    }
}
