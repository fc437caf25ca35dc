//! PROXY protocol headers as a load balancer writes them (HAProxy's
//! specification, version 2 binary and version 1 text), built here from
//! the specification rather than with the edge's own code.

use std::net::{IpAddr, SocketAddr};

/// The twelve bytes every v2 header starts with.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The `LOCAL` command: a balancer's own connection (a health check).
pub const LOCAL: u8 = 0;
/// The `PROXY` command: a client's connection.
pub const PROXY: u8 = 1;
/// Address family and transport: TCP over IPv4, over IPv6, and AF_UNIX.
pub const TCP4: u8 = 0x11;
pub const TCP6: u8 = 0x21;
pub const UNIX_STREAM: u8 = 0x31;
/// The TLV type HAProxy sends its unique id in.
pub const UNIQUE_ID: u8 = 0x05;

/// A v2 header: version 2 with `command`, then `family`, the length, the
/// `addresses` block and the `tlvs`, all as given (a test may lie).
pub fn v2(command: u8, family: u8, addresses: &[u8], tlvs: &[u8]) -> Vec<u8> {
    let length = u16::try_from(addresses.len() + tlvs.len()).expect("a v2 header fits 64 KiB");
    let mut h = V2_SIGNATURE.to_vec();
    h.extend_from_slice(&[0x20 | command, family]);
    h.extend_from_slice(&length.to_be_bytes());
    h.extend_from_slice(addresses);
    h.extend_from_slice(tlvs);
    h
}

/// The family and address block for a TCP connection from `src` to `dst`;
/// when only one of them is IPv6, the other is written IPv4-mapped.
pub fn addresses(src: SocketAddr, dst: SocketAddr) -> (u8, Vec<u8>) {
    let (family, ips) = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => (TCP4, [s.octets().to_vec(), d.octets().to_vec()]),
        (s, d) => {
            let six = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
                IpAddr::V6(v6) => v6.octets(),
            };
            (TCP6, [six(s).to_vec(), six(d).to_vec()])
        }
    };
    let mut block = ips.concat();
    block.extend_from_slice(&src.port().to_be_bytes());
    block.extend_from_slice(&dst.port().to_be_bytes());
    (family, block)
}

/// A v2 `PROXY` header for a client at `src` connecting to `dst`.
pub fn v2_proxy(src: SocketAddr, dst: SocketAddr, tlvs: &[u8]) -> Vec<u8> {
    let (family, block) = addresses(src, dst);
    v2(PROXY, family, &block, tlvs)
}

/// A v2 `LOCAL` header (no addresses).
pub fn v2_local() -> Vec<u8> {
    v2(LOCAL, 0, &[], &[])
}

/// One TLV: type, length, value.
pub fn tlv(kind: u8, value: &[u8]) -> Vec<u8> {
    let length = u16::try_from(value.len()).expect("a TLV fits 64 KiB");
    [&[kind][..], &length.to_be_bytes(), value].concat()
}

/// A v1 header line for a TCP connection from `src` to `dst` (one family).
pub fn v1(src: SocketAddr, dst: SocketAddr) -> String {
    let proto = if src.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {proto} {} {} {} {}\r\n",
        src.ip(),
        dst.ip(),
        src.port(),
        dst.port()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v2_header_for_ipv4_is_28_bytes() {
        let h = v2_proxy(
            "198.51.100.1:4321".parse().unwrap(),
            "127.0.0.1:443".parse().unwrap(),
            &[],
        );
        assert_eq!(h.len(), 16 + 12);
        assert_eq!(&h[12..16], &[0x21, 0x11, 0, 12]);
        assert_eq!(&h[16..20], &[198, 51, 100, 1]);
        assert_eq!(&h[24..], &[0x10, 0xe1, 0x01, 0xbb]);
    }

    #[test]
    fn a_mixed_pair_is_written_as_ipv6() {
        let (family, block) = addresses(
            "[2001:db8::1]:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        );
        assert_eq!((family, block.len()), (TCP6, 36));
        assert_eq!(
            &block[16..32],
            &"::ffff:127.0.0.1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets()
        );
    }
}
