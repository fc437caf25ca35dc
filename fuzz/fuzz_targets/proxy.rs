//! PROXY protocol headers from arbitrary bytes: parsing never panics, never
//! claims more bytes than it was given, agrees with itself on every prefix
//! (a complete header stays complete, an error stays an error), and never
//! yields a client address for v2 LOCAL.

#![no_main]

use cti_edge::proxy::{parse, ProxyError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let full = parse(data);
    if let Ok(Some((header, used))) = &full {
        assert!(*used <= data.len());
        assert!(header.version == 1 || header.version == 2);
        if header.version == 2 && data[12] & 0x0f == 0 {
            assert!(header.source.is_none(), "LOCAL with an address");
        }
        // Bytes after the header do not change it.
        let mut more = data[..*used].to_vec();
        more.extend_from_slice(b"\x16\x03\x01trailing");
        assert_eq!(parse(&more), Ok(Some((header.clone(), *used))));
    }
    // Feeding the same bytes one at a time reaches the same answer.
    for cut in 0..data.len() {
        match parse(&data[..cut]) {
            Ok(None) => {}
            Ok(Some(done)) => {
                assert_eq!(
                    full,
                    Ok(Some(done)),
                    "a shorter prefix completed differently"
                );
                return;
            }
            Err(e) => {
                assert!(
                    matches!(full, Err(_)),
                    "prefix error {e:?} but the whole parses"
                );
                assert!(!matches!(
                    e,
                    ProxyError::Timeout(_) | ProxyError::Eof | ProxyError::Io(_)
                ));
                return;
            }
        }
    }
});
