//! Nickname rules: 1 to 40 bytes from a fixed alphabet, case-sensitive.

use thiserror::Error;

/// Longest accepted nickname, in bytes.
pub const MAX_LEN: usize = 40;

/// Punctuation allowed besides ASCII letters and digits.
const PUNCTUATION: &[u8] = b"@/:.^+!-_*";

/// Why a nickname was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NickError {
    #[error("the name is empty: give 1 to {MAX_LEN} characters")]
    Empty,
    #[error("the name is {0} bytes long: the limit is {MAX_LEN}")]
    TooLong(usize),
    #[error("the name contains {0:?}: only A-Z a-z 0-9 and @ / : . ^ + ! - _ * are allowed")]
    BadChar(char),
}

/// Checks `nick` against the game's rules; nothing else in the project decides this.
pub fn validate(nick: &str) -> Result<(), NickError> {
    if nick.is_empty() {
        return Err(NickError::Empty);
    }
    // The character check comes first so that a long name made of forbidden
    // characters is reported for what is wrong with each of them.
    if let Some(bad) = nick.chars().find(|c| !allowed(*c)) {
        return Err(NickError::BadChar(bad));
    }
    if nick.len() > MAX_LEN {
        return Err(NickError::TooLong(nick.len()));
    }
    Ok(())
}

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || (c.is_ascii() && PUNCTUATION.contains(&(c as u8)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_allowed_character() {
        assert_eq!(validate("a"), Ok(()));
        assert_eq!(validate("AZaz09@/:.^+!-_*"), Ok(()));
        assert_eq!(validate(&"x".repeat(40)), Ok(()));
    }

    #[test]
    fn refuses_empty_long_and_foreign() {
        assert_eq!(validate(""), Err(NickError::Empty));
        assert_eq!(validate(&"x".repeat(41)), Err(NickError::TooLong(41)));
        for bad in [
            " ", "a b", "<script>", "é", "a\0", "a\n", "%41", "&", "'", "\"", "a=b", "a?b", "a#b",
            "~",
        ] {
            assert!(
                matches!(validate(bad), Err(NickError::BadChar(_))),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn names_are_case_sensitive_bytes() {
        // Validation does not fold case; the store keeps "Bob" and "bob" apart.
        assert_eq!(validate("Bob"), Ok(()));
        assert_eq!(validate("bob"), Ok(()));
    }

    #[test]
    fn message_names_the_offending_character() {
        let msg = validate("bad<name").unwrap_err().to_string();
        assert!(msg.contains("'<'"), "{msg}");
    }
}
