//! Log levels: one spelling for each, shared by the agent that detects them and the query
//! layer that filters on them, and finding one in a line ([`detect`]).

mod detect;

pub use detect::detect;

/// The canonical level names, least to most severe.
pub const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "fatal"];

/// The level of a Kubernetes event record by its type: `Warning` is `warn`, `Normal` `info`.
pub fn of_event_type(kind: &str) -> &'static str {
    match kind {
        "Warning" => "warn",
        "Normal" => "info",
        _ => "",
    }
}

/// The canonical name for a level word in any case (`WARNING` → `warn`, `[err]` is not
/// stripped here), or `None` when the word is not a level.
pub fn canonical(word: &str) -> Option<&'static str> {
    canonical_bytes(word.as_bytes())
}

/// [`canonical`] of raw bytes: level words are ASCII, so anything else is not one, and the
/// agent can ask of the bytes it read without checking them for UTF-8 first.
pub fn canonical_bytes(word: &[u8]) -> Option<&'static str> {
    let mut buf = [0u8; 8];
    if word.len() > buf.len() {
        return None;
    }
    let lower = &mut buf[..word.len()];
    lower.copy_from_slice(word);
    lower.make_ascii_lowercase();
    Some(match &*lower {
        b"trace" => "trace",
        b"debug" => "debug",
        b"info" | b"notice" => "info",
        b"warn" | b"warning" => "warn",
        b"error" | b"err" => "error",
        b"fatal" | b"critical" | b"crit" | b"severe" | b"panic" => "fatal",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_map_to_one_name() {
        assert_eq!(canonical("WARNING"), Some("warn"));
        assert_eq!(canonical("Warn"), Some("warn"));
        assert_eq!(canonical("notice"), Some("info"));
        assert_eq!(canonical("CRITICAL"), Some("fatal"));
        assert_eq!(canonical("ERROR"), Some("error"));
        assert_eq!(canonical("errors"), None);
        assert_eq!(canonical("informational"), None);
        assert_eq!(canonical_bytes(b"ERR"), Some("error"));
        assert_eq!(canonical_bytes("错误".as_bytes()), None);
        for level in LEVELS {
            assert_eq!(canonical(level), Some(level));
        }
    }
}
