//! Which address made a request: the peer the transport vouches for, unless
//! that peer is a trusted HTTP proxy. Then the one header the operator names
//! (the one its proxy writes) is read from the right, skipping trusted hops,
//! and the first untrusted hop is the client. Every other forwarding header
//! is ignored: proxies pass a client's own headers through untouched, so a
//! header the proxy did not write is whatever the client wants it to be.

use crate::cidr::Cidr;
use crate::error::ApiError;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::StatusCode;
use std::net::{IpAddr, Ipv4Addr};

/// Hops read from the right at most; a chain of more trusted proxies than
/// this leaves the client unknown.
pub const MAX_HOPS: usize = 32;
/// Bytes of the header read from the right at most, so that a client cannot
/// make the walk slow by sending a huge list (or one huge hop).
pub const MAX_BYTES: usize = 4096;

/// The header a trusted proxy writes the client's address into.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, ...` (nginx, HAProxy, cloud balancers).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1`.
    Forwarded,
    /// `X-Real-IP: client`: one address, set (not appended) by the proxy.
    XRealIp,
}

impl ForwardedHeader {
    pub fn name(self) -> &'static str {
        match self {
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::Forwarded => "forwarded",
            ForwardedHeader::XRealIp => "x-real-ip",
        }
    }
}

/// The HTTP proxies whose header is believed, and which header that is.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    pub ranges: Vec<Cidr>,
    pub header: ForwardedHeader,
}

/// The client's address (IPv4-mapped addresses as IPv4), or `None` when the
/// connection has none or a trusted proxy's header does not say who it is.
pub fn resolve(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    proxies: &TrustedProxies,
) -> Option<IpAddr> {
    let peer = peer?.to_canonical();
    if !Cidr::any(&proxies.ranges, peer) {
        return Some(peer);
    }
    // Right to left: the nearest hop first. A hop that is not an address
    // where the client should be means the client is unknown: better no
    // address than a proxy's, or one the client wrote.
    let mut client = peer;
    for (n, hop) in Hops::new(headers, proxies.header).enumerate() {
        if n == MAX_HOPS {
            return None;
        }
        let ip = hop?.to_canonical();
        if !Cidr::any(&proxies.ranges, ip) {
            return Some(ip);
        }
        client = ip;
    }
    // Every hop trusted: the leftmost is an internal client.
    Some(client)
}

/// The client's IPv4 address (unwrapping the v4-mapped form), or the error
/// that tells why there is none.
pub fn client_ipv4(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    proxies: &TrustedProxies,
) -> Result<Ipv4Addr, ApiError> {
    match resolve(peer, headers, proxies).ok_or_else(no_address)? {
        IpAddr::V4(v4) => Ok(v4),
        IpAddr::V6(v6) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "not_ipv4",
            format!("IPv4 is needed: you came from the IPv6 address {v6}."),
        )),
    }
}

pub fn no_address() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "no_client_address",
        "This connection carries no client address (a load balancer health check), so it cannot claim.",
    )
}

/// The hops of one header, right to left, within the byte budget. An item
/// is `None` for a hop that is not an address (or past the budget).
struct Hops<'a> {
    lines: std::iter::Rev<hyper::header::ValueIter<'a, HeaderValue>>,
    /// What is left of the field line being read.
    line: Option<&'a [u8]>,
    budget: usize,
    kind: ForwardedHeader,
    done: bool,
}

impl<'a> Hops<'a> {
    fn new(headers: &'a HeaderMap, kind: ForwardedHeader) -> Hops<'a> {
        let mut lines = headers.get_all(kind.name()).iter().rev();
        // X-Real-IP is set, not appended: only its last line is the proxy's.
        let line = match kind {
            ForwardedHeader::XRealIp => lines.next().map(HeaderValue::as_bytes),
            _ => None,
        };
        let done = kind == ForwardedHeader::XRealIp && line.is_none();
        Hops {
            lines,
            line,
            budget: MAX_BYTES,
            kind,
            done,
        }
    }

    /// The last list element of the current field line, moving to earlier
    /// lines as each runs out; `Err` past the byte budget.
    fn next_element(&mut self) -> Option<Result<&'a [u8], ()>> {
        loop {
            let line = match self.line {
                Some(l) => l,
                None if self.kind == ForwardedHeader::XRealIp => return None,
                None => self.lines.next()?.as_bytes(),
            };
            let window = &line[line.len().saturating_sub(self.budget)..];
            let (rest, element) = match window.iter().rposition(|&b| b == b',') {
                Some(i) => (
                    Some(&line[..line.len() - window.len() + i]),
                    &window[i + 1..],
                ),
                None if window.len() < line.len() => return Some(Err(())),
                None => (None, window),
            };
            self.budget -= element.len() + usize::from(rest.is_some());
            self.line = rest;
            if self.kind == ForwardedHeader::XRealIp && rest.is_some() {
                return Some(Err(())); // one address, not a list
            }
            // Empty list elements are allowed and mean nothing (RFC 9110 §5.6.1).
            if !element.trim_ascii().is_empty() {
                return Some(Ok(element));
            }
        }
    }
}

impl Iterator for Hops<'_> {
    type Item = Option<IpAddr>;

    fn next(&mut self) -> Option<Option<IpAddr>> {
        if self.done {
            return None;
        }
        let hop = match self.next_element()? {
            Ok(element) => match self.kind {
                ForwardedHeader::Forwarded => forwarded_for(element),
                _ => node(element.trim_ascii()),
            },
            Err(()) => None,
        };
        // After an unreadable hop nothing further left can be placed.
        self.done = hop.is_none();
        Some(hop)
    }
}

/// The `for=` of one `Forwarded` element (`for=1.2.3.4;proto=https`); `None`
/// when it is missing, repeated, obfuscated or `unknown`.
fn forwarded_for(element: &[u8]) -> Option<IpAddr> {
    let mut found = None;
    for pair in element.split(|&b| b == b';') {
        let pair = pair.trim_ascii();
        if pair.is_empty() {
            continue; // `for=1.2.3.4;` (RFC 7239 allows empty pairs)
        }
        let eq = pair.iter().position(|&b| b == b'=')?;
        if !pair[..eq].eq_ignore_ascii_case(b"for") {
            continue;
        }
        if found.is_some() {
            return None; // a parameter occurs at most once (RFC 7239 §4)
        }
        let value = &pair[eq + 1..];
        let value = match value.strip_prefix(b"\"") {
            Some(quoted) => quoted.strip_suffix(b"\"")?,
            None => value,
        };
        found = Some(node(value)?);
    }
    found
}

/// An address with an optional port: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`,
/// `[2001:db8::1]`, `[2001:db8::1]:80`.
fn node(b: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(b).ok()?;
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (v6, port) = rest.split_once(']')?;
        return (port.is_empty() || port.strip_prefix(':').is_some_and(is_port))
            .then(|| v6.parse().ok().map(IpAddr::V6))?;
    }
    let (v4, port) = s.split_once(':')?;
    is_port(port).then(|| v4.parse::<Ipv4Addr>().ok().map(IpAddr::V4))?
}

/// A port, or an obfuscated one (RFC 7239 §6.3 `obfport`).
fn is_port(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 16
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    fn behind(header: ForwardedHeader, ranges: &[&str]) -> TrustedProxies {
        TrustedProxies {
            ranges: ranges.iter().map(|r| r.parse().unwrap()).collect(),
            header,
        }
    }

    const PROXY: &str = "10.0.0.1";

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_says() {
        let h = headers(&[("x-forwarded-for", "9.9.9.9"), ("forwarded", "for=8.8.8.8")]);
        for kind in [
            ForwardedHeader::XForwardedFor,
            ForwardedHeader::Forwarded,
            ForwardedHeader::XRealIp,
        ] {
            assert_eq!(
                resolve(ip("1.1.1.1"), &h, &behind(kind, &[])),
                ip("1.1.1.1")
            );
        }
        assert_eq!(
            resolve(ip("::ffff:1.1.1.1"), &h, &TrustedProxies::default()),
            ip("1.1.1.1"),
            "IPv4-mapped is IPv4"
        );
    }

    #[test]
    fn only_the_named_header_is_read() {
        // nginx appends to X-Forwarded-For and passes the client's Forwarded on.
        let h = headers(&[
            ("forwarded", "for=8.8.8.8"),
            ("x-real-ip", "7.7.7.7"),
            ("x-forwarded-for", "5.5.5.5"),
        ]);
        let xff = behind(ForwardedHeader::XForwardedFor, &[PROXY]);
        assert_eq!(resolve(ip(PROXY), &h, &xff), ip("5.5.5.5"));
        let fwd = behind(ForwardedHeader::Forwarded, &[PROXY]);
        assert_eq!(resolve(ip(PROXY), &h, &fwd), ip("8.8.8.8"));
        let real = behind(ForwardedHeader::XRealIp, &[PROXY]);
        assert_eq!(resolve(ip(PROXY), &h, &real), ip("7.7.7.7"));
        // The named header absent: the proxy itself made the request.
        let h = headers(&[("forwarded", "for=8.8.8.8")]);
        assert_eq!(resolve(ip(PROXY), &h, &xff), ip(PROXY));
    }

    #[test]
    fn a_client_supplied_header_under_the_proxys_loses() {
        let xff = behind(ForwardedHeader::XForwardedFor, &[PROXY]);
        // The client sent `X-Forwarded-For: 8.8.8.8`; the proxy appended.
        let h = headers(&[("x-forwarded-for", "8.8.8.8, 203.0.113.9")]);
        assert_eq!(resolve(ip(PROXY), &h, &xff), ip("203.0.113.9"));
        // The same as two field lines: the proxy's is the last.
        let h = headers(&[
            ("x-forwarded-for", "8.8.8.8"),
            ("x-forwarded-for", "203.0.113.9"),
        ]);
        assert_eq!(resolve(ip(PROXY), &h, &xff), ip("203.0.113.9"));
        let fwd = behind(ForwardedHeader::Forwarded, &[PROXY]);
        let h = headers(&[(
            "forwarded",
            "for=8.8.8.8, for=\"203.0.113.9:5000\";proto=https",
        )]);
        assert_eq!(resolve(ip(PROXY), &h, &fwd), ip("203.0.113.9"));
        // An unbalanced quote from the client does not swallow the proxy's hop.
        let h = headers(&[("forwarded", "for=\"8.8.8.8, for=203.0.113.9")]);
        assert_eq!(resolve(ip(PROXY), &h, &fwd), ip("203.0.113.9"));
        let real = behind(ForwardedHeader::XRealIp, &[PROXY]);
        let h = headers(&[("x-real-ip", "8.8.8.8"), ("x-real-ip", "203.0.113.9")]);
        assert_eq!(resolve(ip(PROXY), &h, &real), ip("203.0.113.9"));
    }

    #[test]
    fn trusted_hops_are_skipped_and_a_forged_leftmost_hop_is_not_believed() {
        let xff = behind(ForwardedHeader::XForwardedFor, &["10.0.0.0/24"]);
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 5.5.5.5, 10.0.0.7")]);
        assert_eq!(
            resolve(ip(PROXY), &h, &xff),
            ip("5.5.5.5"),
            "6.6.6.6 is forged"
        );
        let h = headers(&[("x-forwarded-for", "10.0.0.9")]);
        assert_eq!(
            resolve(ip(PROXY), &h, &xff),
            ip("10.0.0.9"),
            "an internal client"
        );
        let h = headers(&[("x-forwarded-for", "::ffff:10.0.0.9, ::ffff:5.5.5.5")]);
        assert_eq!(resolve(ip(PROXY), &h, &xff), ip("5.5.5.5"));
        let fwd = behind(ForwardedHeader::Forwarded, &["10.0.0.0/24"]);
        let h = headers(&[(
            "forwarded",
            "for=6.6.6.6, for=\"[2001:db8::1]:443\";proto=https, for=10.0.0.7;by=10.0.0.1",
        )]);
        assert_eq!(resolve(ip(PROXY), &h, &fwd), ip("2001:db8::1"));
        assert_eq!(resolve(ip(PROXY), &HeaderMap::new(), &fwd), ip(PROXY));
    }

    #[test]
    fn garbage_hops_leave_the_client_unknown() {
        let xff = behind(ForwardedHeader::XForwardedFor, &[PROXY]);
        for value in [
            "garbage",
            "5.5.5.5 6.6.6.6",
            "1.2.3.4:",
            "1.2.3.4:80:80",
            "[::1",
            "01.2.3.4",
        ] {
            let h = headers(&[("x-forwarded-for", value)]);
            assert_eq!(resolve(ip(PROXY), &h, &xff), None, "{value:?}");
        }
        // Garbage left of the client is never reached.
        let h = headers(&[("x-forwarded-for", "garbage, 5.5.5.5")]);
        assert_eq!(resolve(ip(PROXY), &h, &xff), ip("5.5.5.5"));
        // Empty list elements are skipped.
        let h = headers(&[("x-forwarded-for", "5.5.5.5, ,")]);
        assert_eq!(resolve(ip(PROXY), &h, &xff), ip("5.5.5.5"));
        let fwd = behind(ForwardedHeader::Forwarded, &[PROXY]);
        for value in [
            "for=unknown",
            "for=_hidden",
            "proto=https",
            "for=5.5.5.5;for=6.6.6.6",
            "for=\"5.5.5.5",
            "for=[2001:db8::1]x",
        ] {
            let h = headers(&[("forwarded", value)]);
            assert_eq!(resolve(ip(PROXY), &h, &fwd), None, "{value:?}");
        }
        let real = behind(ForwardedHeader::XRealIp, &[PROXY]);
        let h = headers(&[("x-real-ip", "5.5.5.5, 6.6.6.6")]);
        assert_eq!(
            resolve(ip(PROXY), &h, &real),
            None,
            "one address, not a list"
        );
    }

    #[test]
    fn many_hops_are_bounded() {
        let xff = behind(ForwardedHeader::XForwardedFor, &["10.0.0.0/8"]);
        let chain = |trusted: usize| {
            let mut v = "5.5.5.5".to_string();
            for _ in 0..trusted {
                v.push_str(", 10.0.0.2");
            }
            headers(&[("x-forwarded-for", &v)])
        };
        assert_eq!(
            resolve(ip(PROXY), &chain(MAX_HOPS - 1), &xff),
            ip("5.5.5.5")
        );
        assert_eq!(resolve(ip(PROXY), &chain(MAX_HOPS), &xff), None, "hop cap");
        assert_eq!(resolve(ip(PROXY), &chain(100_000), &xff), None);
        // A client address past the byte budget is not looked for.
        let wide = format!("5.5.5.5,{}10.0.0.2", " ".repeat(MAX_BYTES));
        let h = headers(&[("x-forwarded-for", &wide)]);
        assert_eq!(resolve(ip(PROXY), &h, &xff), None, "byte cap");
        // A huge header whose last hop is the client costs one hop.
        let mut v = "9.9.9.9, ".repeat(100_000);
        v.push_str("5.5.5.5");
        let h = headers(&[("x-forwarded-for", &v)]);
        assert_eq!(resolve(ip(PROXY), &h, &xff), ip("5.5.5.5"));
        // Many field lines count against the same caps.
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", HeaderValue::from_static("5.5.5.5"));
        for _ in 0..MAX_HOPS {
            h.append("x-forwarded-for", HeaderValue::from_static("10.0.0.2"));
        }
        assert_eq!(resolve(ip(PROXY), &h, &xff), None);
    }

    #[test]
    fn no_peer_no_client() {
        assert_eq!(
            resolve(None, &HeaderMap::new(), &TrustedProxies::default()),
            None
        );
    }
}
