//! The PROXY protocol (v1 text, v2 binary) as trusted load balancers send it
//! before the client's bytes. Parsing is `ppp`'s; this module adds what it
//! leaves to the caller (the traps of ppp 2.3, each with a test): reading
//! incrementally up to a complete header, strict v1 syntax, a cap on the v2
//! length, TLV and CRC32C checks, and no client address for `LOCAL`/`UNKNOWN`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Longest v1 header, CRLF included (the specification's limit).
pub const V1_MAX: usize = 107;
/// The v2 signature.
pub const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Largest v2 payload (addresses + TLVs) accepted; the specification allows
/// 65535, but no balancer sends more than a few hundred bytes.
pub const V2_MAX_PAYLOAD: usize = 2048;
/// Least header timeout the specification advises.
pub const MIN_TIMEOUT: Duration = Duration::from_secs(3);

const TLV_CRC32C: u8 = 0x03;
const TLV_UNIQUE_ID: u8 = 0x05;

/// What a valid header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub version: u8,
    /// The client; `None` for v2 `LOCAL`, v1 `UNKNOWN`, `AF_UNSPEC` and `AF_UNIX`.
    pub source: Option<SocketAddr>,
    /// HAProxy's `unique-id` TLV, for the request log.
    pub unique_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProxyError {
    #[error("no PROXY protocol header where one was required")]
    Missing,
    #[error("v1 header longer than {V1_MAX} bytes")]
    V1TooLong,
    #[error("malformed v1 header: {0}")]
    V1Malformed(&'static str),
    #[error("unsupported v2 version {0}")]
    V2Version(u8),
    #[error("unsupported v2 command {0}")]
    V2Command(u8),
    #[error("v2 payload of {0} bytes is over the limit")]
    V2TooLong(usize),
    #[error("malformed v2 header: {0}")]
    V2Malformed(String),
    #[error("malformed v2 TLV: {0}")]
    Tlv(String),
    #[error("v2 CRC32C does not match")]
    Checksum,
    #[error("the connection closed inside the header")]
    Eof,
    #[error("no complete header within {0:?}")]
    Timeout(Duration),
    #[error("reading the header: {0}")]
    Io(String),
}

/// Whether `buf` starts like a PROXY header (so far as it goes).
pub fn looks_like_header(buf: &[u8]) -> bool {
    let n = buf.len().min(6);
    (n > 0 && buf[..n] == b"PROXY "[..n]) || {
        let n = buf.len().min(V2_SIGNATURE.len());
        n > 0 && buf[..n] == V2_SIGNATURE[..n]
    }
}

/// Parses a header at the start of `buf`: `Ok(None)` when more bytes are
/// needed, else the header and how many bytes it took.
pub fn parse(buf: &[u8]) -> Result<Option<(Header, usize)>, ProxyError> {
    if buf.is_empty() {
        return Ok(None);
    }
    if buf.len().min(V2_SIGNATURE.len()) > 0
        && buf[..buf.len().min(12)] == V2_SIGNATURE[..buf.len().min(12)]
    {
        return parse_v2(buf);
    }
    if buf[..buf.len().min(6)] == b"PROXY "[..buf.len().min(6)] {
        return parse_v1(buf);
    }
    Err(ProxyError::Missing)
}

fn parse_v1(buf: &[u8]) -> Result<Option<(Header, usize)>, ProxyError> {
    let window = &buf[..buf.len().min(V1_MAX)];
    // The first line break decides: an LF before any CR is malformed however
    // the bytes arrive (a later CR must not turn it into "need more").
    let Some(cr) = window.iter().position(|b| *b == b'\r' || *b == b'\n') else {
        return if buf.len() >= V1_MAX {
            Err(ProxyError::V1TooLong)
        } else {
            Ok(None)
        };
    };
    if window[cr] == b'\n' {
        return Err(ProxyError::V1Malformed("line ends without CR"));
    }
    match window.get(cr + 1) {
        None if buf.len() >= V1_MAX => return Err(ProxyError::V1TooLong),
        None => return Ok(None),
        Some(b'\n') => {}
        Some(_) => return Err(ProxyError::V1Malformed("CR without LF")),
    }
    let len = cr + 2;
    let line = std::str::from_utf8(&buf[..cr]).map_err(|_| ProxyError::V1Malformed("not ASCII"))?;
    let source = v1_source(line)?;
    // Cross-check with ppp: both must accept the line.
    ppp::v1::Header::try_from(std::str::from_utf8(&buf[..len]).unwrap_or_default())
        .map_err(|_| ProxyError::V1Malformed("rejected by the parser"))?;
    Ok(Some((
        Header {
            version: 1,
            source,
            unique_id: None,
        },
        len,
    )))
}

/// Strict v1 syntax: `PROXY TCP4|TCP6 src dst sport dport` with canonical
/// addresses and plain decimal ports, or `PROXY UNKNOWN ...`.
fn v1_source(line: &str) -> Result<Option<SocketAddr>, ProxyError> {
    let fields: Vec<&str> = line.split(' ').collect();
    match fields.as_slice() {
        ["PROXY", "UNKNOWN", ..] => Ok(None),
        ["PROXY", proto @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let v4 = *proto == "TCP4";
            let src = canonical_ip(src, v4)?;
            canonical_ip(dst, v4)?;
            let sport = port(sport)?;
            port(dport)?;
            Ok(Some(SocketAddr::new(src, sport)))
        }
        ["PROXY", "TCP4" | "TCP6", ..] => Err(ProxyError::V1Malformed("wrong number of fields")),
        _ => Err(ProxyError::V1Malformed("unknown protocol")),
    }
}

fn canonical_ip(text: &str, v4: bool) -> Result<IpAddr, ProxyError> {
    let ip: IpAddr = if v4 {
        text.parse::<Ipv4Addr>()
            .map(IpAddr::V4)
            .map_err(|_| ProxyError::V1Malformed("bad IPv4 address"))?
    } else {
        text.parse::<Ipv6Addr>()
            .map(IpAddr::V6)
            .map_err(|_| ProxyError::V1Malformed("bad IPv6 address"))?
    };
    if v4 && ip.to_string() != text {
        return Err(ProxyError::V1Malformed("address not in canonical form"));
    }
    Ok(ip)
}

fn port(text: &str) -> Result<u16, ProxyError> {
    let plain = !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit());
    let canonical = text == "0" || !text.starts_with('0');
    match (plain && canonical)
        .then(|| text.parse::<u16>().ok())
        .flatten()
    {
        Some(p) => Ok(p),
        None => Err(ProxyError::V1Malformed("port is not plain decimal 0-65535")),
    }
}

fn parse_v2(buf: &[u8]) -> Result<Option<(Header, usize)>, ProxyError> {
    if buf.len() < 16 {
        return Ok(None);
    }
    let (version, command) = (buf[12] >> 4, buf[12] & 0x0f);
    if version != 2 {
        return Err(ProxyError::V2Version(version));
    }
    if command > 1 {
        return Err(ProxyError::V2Command(command));
    }
    let payload = u16::from_be_bytes([buf[14], buf[15]]) as usize;
    if payload > V2_MAX_PAYLOAD {
        return Err(ProxyError::V2TooLong(payload));
    }
    let len = 16 + payload;
    if buf.len() < len {
        return Ok(None);
    }
    let bytes = &buf[..len];
    let header =
        ppp::v2::Header::try_from(bytes).map_err(|e| ProxyError::V2Malformed(e.to_string()))?;
    let mut unique_id = None;
    for tlv in header.tlvs() {
        let tlv = tlv.map_err(|e| ProxyError::Tlv(e.to_string()))?;
        match tlv.kind {
            TLV_CRC32C => check_crc(bytes, &header, &tlv.value)?,
            TLV_UNIQUE_ID => unique_id = Some(String::from_utf8_lossy(&tlv.value).into_owned()),
            _ => {}
        }
    }
    // LOCAL (health checks) carries no client, whatever addresses it holds.
    let source = match (header.command, header.addresses) {
        (ppp::v2::Command::Local, _) => None,
        (_, ppp::v2::Addresses::IPv4(a)) => {
            Some(SocketAddr::new(a.source_address.into(), a.source_port))
        }
        (_, ppp::v2::Addresses::IPv6(a)) => {
            Some(SocketAddr::new(a.source_address.into(), a.source_port))
        }
        (_, ppp::v2::Addresses::Unix(_) | ppp::v2::Addresses::Unspecified) => None,
    };
    Ok(Some((
        Header {
            version: 2,
            source,
            unique_id,
        },
        len,
    )))
}

/// The CRC32C TLV covers the whole header with its own value zeroed.
fn check_crc(bytes: &[u8], header: &ppp::v2::Header<'_>, value: &[u8]) -> Result<(), ProxyError> {
    let expected: [u8; 4] = value
        .try_into()
        .map_err(|_| ProxyError::Tlv("CRC32C TLV is not 4 bytes".into()))?;
    // Find the TLV's value inside the header bytes to zero it.
    let tlv_start = bytes.len() - header.tlv_bytes().len();
    let mut offset = tlv_start;
    let mut copy = bytes.to_vec();
    while offset + 3 <= copy.len() {
        let kind = copy[offset];
        let len = u16::from_be_bytes([copy[offset + 1], copy[offset + 2]]) as usize;
        if kind == TLV_CRC32C && len == 4 {
            copy[offset + 3..offset + 7].fill(0);
            break;
        }
        offset += 3 + len;
    }
    if crc32c(&copy).to_be_bytes() == expected {
        Ok(())
    } else {
        Err(ProxyError::Checksum)
    }
}

/// CRC-32C (Castagnoli), bitwise: headers are short.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Reads a complete header from `io` within `timeout`; returns it with the
/// bytes that followed it in the same reads (the start of the client's data).
pub async fn read<S: AsyncRead + Unpin>(
    io: &mut S,
    timeout: Duration,
) -> Result<(Header, Vec<u8>), ProxyError> {
    let work = async {
        let mut buf = Vec::with_capacity(256);
        loop {
            if let Some((header, used)) = parse(&buf)? {
                return Ok((header, buf.split_off(used)));
            }
            buf.reserve(1024);
            let n = io
                .read_buf(&mut buf)
                .await
                .map_err(|e| ProxyError::Io(e.to_string()))?;
            if n == 0 {
                return Err(ProxyError::Eof);
            }
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| ProxyError::Timeout(timeout))?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A v2 header: command, family/protocol byte, address bytes, TLVs.
    pub fn v2(command: u8, fam: u8, addrs: &[u8], tlvs: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(fam);
        h.extend_from_slice(&((addrs.len() + tlvs.len()) as u16).to_be_bytes());
        h.extend_from_slice(addrs);
        h.extend_from_slice(tlvs);
        h
    }

    fn v4_addrs() -> Vec<u8> {
        [[203, 0, 113, 7], [10, 0, 0, 1]]
            .concat()
            .into_iter()
            .chain(40000u16.to_be_bytes())
            .chain(443u16.to_be_bytes())
            .collect()
    }

    fn src(h: &[u8]) -> Result<Option<(Option<SocketAddr>, usize)>, ProxyError> {
        parse(h).map(|o| o.map(|(h, n)| (h.source, n)))
    }

    fn sa(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn v1_valid_and_leftover() {
        let line = b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 443\r\n\x16\x03\x01";
        assert_eq!(
            src(line),
            Ok(Some((sa("203.0.113.7:40000"), line.len() - 3)))
        );
        let v6 = b"PROXY TCP6 2001:db8::1 ::1 1 2\r\n";
        assert_eq!(src(v6), Ok(Some((sa("[2001:db8::1]:1"), v6.len()))));
        let mapped = b"PROXY TCP6 ::ffff:1.2.3.4 ::1 1 2\r\n";
        assert_eq!(src(mapped).unwrap().unwrap().0, sa("[::ffff:1.2.3.4]:1"));
        assert_eq!(src(b"PROXY UNKNOWN\r\n"), Ok(Some((None, 15))));
        assert_eq!(
            src(b"PROXY UNKNOWN ffff::1 ::1 1 2\r\n")
                .unwrap()
                .unwrap()
                .0,
            None
        );
    }

    #[test]
    fn v1_incomplete_is_not_an_error() {
        let line = b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 443\r\n";
        for cut in 1..line.len() {
            assert_eq!(src(&line[..cut]), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn v1_refusals() {
        let bad: &[&[u8]] = &[
            b"PROXY TCP4 203.0.113.7 10.0.0.1 +80 443\r\n",
            b"PROXY TCP4 203.0.113.7 10.0.0.1 080 443\r\n",
            b"PROXY TCP4 203.0.113.7 10.0.0.1 65536 443\r\n",
            b"PROXY TCP4 203.0.113.07 10.0.0.1 1 443\r\n",
            b"PROXY TCP4 1.2.3 10.0.0.1 1 443\r\n",
            b"PROXY TCP4 2001:db8::1 10.0.0.1 1 443\r\n",
            b"PROXY TCP6 1.2.3.4 ::1 1 443\r\n",
            b"PROXY TCP4 1.2.3.4 10.0.0.1 1\r\n",
            b"PROXY TCP4  1.2.3.4 10.0.0.1 1 2\r\n",
            b"PROXY UDP4 1.2.3.4 10.0.0.1 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 10.0.0.1 1 2\n",
            b"PROXY TCP4 1.2.3.4 10.0.0.1 1 2\rX",
            // Found by fuzzing: an LF, then a CR still to come.
            b"PROXY UNKNOWN\n\r",
            b"PROXY UNKNOWN\nx\r",
        ];
        for b in bad {
            assert!(
                matches!(parse(b), Err(ProxyError::V1Malformed(_))),
                "{:?} -> {:?}",
                String::from_utf8_lossy(b),
                parse(b)
            );
        }
        let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 120]].concat();
        assert_eq!(parse(&long), Err(ProxyError::V1TooLong));
        let no_crlf = [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 93]].concat();
        assert_eq!(no_crlf.len(), V1_MAX);
        assert_eq!(parse(&no_crlf), Err(ProxyError::V1TooLong));
    }

    #[test]
    fn v2_valid_local_unix_unspec_and_tlvs() {
        let h = v2(1, 0x11, &v4_addrs(), &[]);
        assert_eq!(src(&h), Ok(Some((sa("203.0.113.7:40000"), 28))));
        let local = v2(0, 0x00, &[], &[]);
        assert_eq!(src(&local), Ok(Some((None, 16))), "HAProxy health check");
        let local_with_addr = v2(0, 0x11, &v4_addrs(), &[]);
        assert_eq!(
            src(&local_with_addr).unwrap().unwrap().0,
            None,
            "LOCAL ignores addresses"
        );
        let unix = v2(1, 0x31, &[0u8; 216], &[]);
        assert_eq!(src(&unix).unwrap().unwrap().0, None);
        let mut v6addrs = vec![0u8; 36];
        v6addrs[..16].copy_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
        v6addrs[32..34].copy_from_slice(&5u16.to_be_bytes());
        assert_eq!(
            src(&v2(1, 0x21, &v6addrs, &[])).unwrap().unwrap().0,
            sa("[2001:db8::7]:5")
        );
        let tlv = [&[TLV_UNIQUE_ID, 0, 3][..], b"abc"].concat();
        let (h, _) = parse(&v2(1, 0x11, &v4_addrs(), &tlv)).unwrap().unwrap();
        assert_eq!(h.unique_id.as_deref(), Some("abc"));
    }

    #[test]
    fn v2_crc32c() {
        assert_eq!(
            crc32c(b"123456789"),
            0xE306_9283,
            "the standard check value"
        );
        let mut h = v2(1, 0x11, &v4_addrs(), &[TLV_CRC32C, 0, 4, 0, 0, 0, 0]);
        let crc = crc32c(&h).to_be_bytes();
        let at = h.len() - 4;
        h[at..].copy_from_slice(&crc);
        assert!(parse(&h).unwrap().is_some());
        h[at] ^= 1;
        assert_eq!(parse(&h), Err(ProxyError::Checksum));
    }

    #[test]
    fn v2_refusals() {
        let mut bad_version = v2(1, 0x11, &v4_addrs(), &[]);
        bad_version[12] = 0x11;
        assert_eq!(parse(&bad_version), Err(ProxyError::V2Version(1)));
        assert_eq!(
            parse(&v2(2, 0x11, &v4_addrs(), &[])),
            Err(ProxyError::V2Command(2))
        );
        assert!(
            matches!(
                parse(&v2(1, 0x11, &v4_addrs()[..8], &[])),
                Err(ProxyError::V2Malformed(_))
            ),
            "short of the addresses"
        );
        let overrun = v2(1, 0x11, &v4_addrs(), &[TLV_UNIQUE_ID, 0, 9, b'x']);
        assert!(
            matches!(parse(&overrun), Err(ProxyError::Tlv(_))),
            "{:?}",
            parse(&overrun)
        );
        let mut huge = v2(1, 0x11, &v4_addrs(), &[]);
        huge[14..16].copy_from_slice(&65535u16.to_be_bytes());
        assert_eq!(
            parse(&huge[..16]),
            Err(ProxyError::V2TooLong(65535)),
            "refused before waiting for it"
        );
        let h = v2(1, 0x11, &v4_addrs(), &[]);
        for cut in 1..h.len() {
            assert_eq!(parse(&h[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Err(ProxyError::Missing));
        assert_eq!(parse(b"\x16\x03\x01"), Err(ProxyError::Missing));
    }

    #[test]
    fn recognises_headers_by_their_start() {
        assert!(looks_like_header(b"PROX"));
        assert!(looks_like_header(b"PROXY TCP4"));
        assert!(looks_like_header(&V2_SIGNATURE[..5]));
        assert!(!looks_like_header(b"GET /"));
        assert!(!looks_like_header(b"\x16\x03"));
    }

    #[tokio::test]
    async fn reads_split_writes_and_keeps_what_follows() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for part in [
                &b"PROXY TCP4 203.0.113.7 "[..],
                b"10.0.0.1 40000 443\r",
                b"\n\x16\x03\x01hello",
            ] {
                client.write_all(part).await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            client
        });
        let (h, rest) = read(&mut server, Duration::from_secs(5)).await.unwrap();
        assert_eq!(h.source, sa("203.0.113.7:40000"));
        assert!(rest.is_empty() || rest.starts_with(b"\x16"), "{rest:?}");
        let _client = writer.await.unwrap();
    }

    #[tokio::test]
    async fn slow_header_times_out() {
        let (mut client, mut server) = tokio::io::duplex(64);
        use tokio::io::AsyncWriteExt;
        client.write_all(b"PROXY TCP4 1.2.3.4").await.unwrap();
        let r = read(&mut server, Duration::from_millis(100)).await;
        assert_eq!(r, Err(ProxyError::Timeout(Duration::from_millis(100))));
    }
}
