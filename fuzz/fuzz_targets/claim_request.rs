//! Claim requests from arbitrary bytes, the way a frontend sees them: the
//! request target is parsed as hyper parses it, the nickname is taken from
//! `/claim?name=` (form-decoded) or `/claim/` (percent-decoded), then checked by the core.
//! Nothing panics; a decoded name agrees with the `percent-encoding` crate;
//! a name the core accepts obeys the nickname rules (1-40 bytes of
//! `A-Z a-z 0-9 @ / : . ^ + ! - _ *`).

#![no_main]

use cti_core::nick::{self, MAX_LEN};
use cti_server::query::claim_nick;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(target) = http::Uri::try_from(data) else {
        return;
    };
    let (path, query) = (target.path(), target.query().unwrap_or(""));
    let Some(decoded) = claim_nick(path, query) else {
        return;
    };
    let Ok(name) = decoded else {
        return;
    };
    // An independent decoder reaches the same name from the raw value.
    // In the path a `+` is itself; in the query it is a space (form encoding).
    let raw = match path.strip_prefix("/claim/") {
        Some(n) => n.to_string(),
        None => query
            .split('&')
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
            .find(|(k, _)| *k == "name")
            .map(|(_, v)| v.replace('+', " "))
            .expect("a decoded name came from a name parameter"),
    };
    let reference = percent_encoding::percent_decode_str(&raw).decode_utf8();
    assert_eq!(
        reference.as_deref(),
        Ok(name.as_str()),
        "decoders disagree on {raw:?}"
    );

    if nick::validate(&name).is_ok() {
        assert!((1..=MAX_LEN).contains(&name.len()), "{name:?}");
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"@/:.^+!-_*".contains(&b)),
            "{name:?}"
        );
    }
});
