//! The shape of a message: a hash of its first words that hold no digit, which lines printed by
//! one log statement share (`Connection to 10.0.0.7 refused` and `Connection to 10.0.0.9
//! refused` have one shape).
//!
//! Every partition keeps its documents sorted by shape, so a segment holds the lines of one
//! template side by side. On the bench's logs that made the message postings 1.8× and the
//! document store 2.3× smaller: a word's documents are runs of neighbours rather than
//! scattered ids, and zstd sees the repeats inside one block. Results are ordered by time,
//! never by document id, so the order costs no query anything.

/// Enough words to tell templates apart; a line's variable tail is left out.
const SHAPE_WORDS: usize = 8;

pub fn shape(message: &str) -> u64 {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    for word in message
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty() && !w.bytes().any(|b| b.is_ascii_digit()))
        .take(SHAPE_WORDS)
    {
        hasher.update(word.as_bytes());
        // A separator keeps `ab c` and `a bc` apart.
        hasher.update(&[0]);
    }
    hasher.digest()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_one_template_share_a_shape() {
        assert_eq!(
            shape("Connection to 10.0.0.7 refused after 3 tries"),
            shape("Connection to 10.0.0.9 refused after 12 tries")
        );
        assert_eq!(shape("订单创建成功 id=17"), shape("订单创建成功 id=18"));
        assert_ne!(shape("Connection refused"), shape("Connection accepted"));
        assert_ne!(shape("ab c"), shape("a bc"));
    }
}
