//! Redaction before anything leaves the pod: built-in rules for personal data common in
//! Chinese services, and user regexes, each counted.
//!
//! The number rules look at whole runs of ASCII digits that stand apart from words (a run
//! touching a letter, `_` or `-` is part of an identifier such as `blk_-1608999687919862906`)
//! and check what a regex cannot: the resident ID's checksum and birth date, the card's Luhn
//! digit and issuer prefix. They keep the ends of a number so that ops can still tell two
//! apart: `138****5678`.

use std::sync::LazyLock;

use regex::Regex;

/// The built-in rules, by the names the config uses.
pub const BUILTIN: [&str; 5] = ["cn_mobile", "cn_id_card", "bank_card", "bearer_token", "password"];

static DIGIT_RUN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[0-9]{17}[Xx]|[0-9]+").expect("valid regex"));
static BEARER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\b(bearer\s+)[A-Za-z0-9\-._~+/]+=*").expect("valid regex"));
static PASSWORD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)\b(password|passwd|pwd|secret|api[_-]?key|access[_-]?key|token)(\s*[=:]\s*)("[^"]*"|'[^']*'|[^\s,;&"']+)"#,
    )
    .expect("valid regex")
});

/// One rule as configured.
#[derive(Debug, Clone)]
enum Rule {
    CnMobile,
    CnIdCard,
    BankCard,
    Bearer,
    Password,
    Custom { name: String, pattern: Regex, replacement: String },
}

impl Rule {
    fn name(&self) -> &str {
        match self {
            Rule::CnMobile => "cn_mobile",
            Rule::CnIdCard => "cn_id_card",
            Rule::BankCard => "bank_card",
            Rule::Bearer => "bearer_token",
            Rule::Password => "password",
            Rule::Custom { name, .. } => name,
        }
    }
}

/// The rules an agent applies to every message: the number rules in one pass over the digit
/// runs, then the regex rules in order.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    numbers: Vec<Rule>,
    patterns: Vec<Rule>,
}

impl Redactor {
    /// Built-in rules by name (`all` for every one), then user rules as (name, pattern,
    /// replacement). Errors say which entry is wrong.
    pub fn new(builtin: &[String], custom: &[(String, String, String)]) -> Result<Self, String> {
        let mut rules = Vec::new();
        for name in builtin {
            let names: Vec<&str> =
                if name == "all" { BUILTIN.to_vec() } else { vec![name.as_str()] };
            for name in names {
                let rule = match name {
                    "cn_mobile" => Rule::CnMobile,
                    "cn_id_card" => Rule::CnIdCard,
                    "bank_card" => Rule::BankCard,
                    "bearer_token" => Rule::Bearer,
                    "password" => Rule::Password,
                    other => {
                        return Err(format!(
                            "redact.builtin: unknown rule {other:?}; the rules are all, {}",
                            BUILTIN.join(", ")
                        ));
                    }
                };
                if !rules.iter().any(|r: &Rule| r.name() == rule.name()) {
                    rules.push(rule);
                }
            }
        }
        for (name, pattern, replacement) in custom {
            if BUILTIN.contains(&name.as_str()) || rules.iter().any(|r| r.name() == name) {
                return Err(format!("redact.rules: the name {name:?} is already taken"));
            }
            let pattern = Regex::new(pattern)
                .map_err(|e| format!("redact.rules: {name}: invalid pattern: {e}"))?;
            rules.push(Rule::Custom {
                name: name.clone(),
                pattern,
                replacement: replacement.clone(),
            });
        }
        let (numbers, patterns) = rules
            .into_iter()
            .partition(|r| matches!(r, Rule::CnMobile | Rule::CnIdCard | Rule::BankCard));
        Ok(Self { numbers, patterns })
    }

    pub fn is_empty(&self) -> bool {
        self.numbers.is_empty() && self.patterns.is_empty()
    }

    /// Redacts `text` in place; true when anything was replaced.
    pub fn apply(&self, text: &mut String) -> bool {
        let mut changed = false;
        if !self.numbers.is_empty() && text.bytes().any(|b| b.is_ascii_digit()) {
            changed |= redact_numbers(text, &self.numbers);
        }
        for rule in &self.patterns {
            let (pattern, replacement): (&Regex, &str) = match rule {
                Rule::Bearer => (&BEARER, "${1}[REDACTED]"),
                Rule::Password => (&PASSWORD, "${1}${2}[REDACTED]"),
                Rule::Custom { pattern, replacement, .. } => (pattern, replacement),
                Rule::CnMobile | Rule::CnIdCard | Rule::BankCard => continue,
            };
            let mut count = 0;
            let replaced = pattern.replace_all(text, |caps: &regex::Captures<'_>| {
                count += 1;
                let mut out = String::new();
                caps.expand(replacement, &mut out);
                out
            });
            if let std::borrow::Cow::Owned(replaced) = replaced {
                *text = replaced;
                count_rule(rule.name(), count);
                changed = true;
            }
        }
        changed
    }
}

fn count_rule(name: &str, count: usize) {
    metrics::counter!("sluice_agent_redactions_total", "rule" => name.to_owned())
        .increment(count as u64);
}

fn redact_numbers(text: &mut String, rules: &[Rule]) -> bool {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    let bytes = text.as_bytes();
    let joined =
        |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-');
    for m in DIGIT_RUN.find_iter(text) {
        if joined(m.start().checked_sub(1).and_then(|i| bytes.get(i))) || joined(bytes.get(m.end()))
        {
            continue;
        }
        let run = m.as_str();
        let Some((rule, keep_start, keep_end)) = rules.iter().find_map(|r| match r {
            Rule::CnMobile if is_cn_mobile(run) => Some((r, 3, 4)),
            Rule::CnIdCard if is_cn_id_card(run) => Some((r, 6, 4)),
            Rule::BankCard if is_bank_card(run) => Some((r, 6, 4)),
            _ => None,
        }) else {
            continue;
        };
        out.push_str(&text[last..m.start()]);
        out.push_str(&run[..keep_start]);
        out.extend(std::iter::repeat_n('*', run.len() - keep_start - keep_end));
        out.push_str(&run[run.len() - keep_end..]);
        last = m.end();
        count_rule(rule.name(), 1);
    }
    if last == 0 {
        return false;
    }
    out.push_str(&text[last..]);
    *text = out;
    true
}

/// Mainland mobile numbers: 11 digits, `1` then `3`–`9`.
fn is_cn_mobile(run: &str) -> bool {
    let b = run.as_bytes();
    b.len() == 11
        && b[0] == b'1'
        && (b'3'..=b'9').contains(&b[1])
        && b.iter().all(u8::is_ascii_digit)
}

/// Resident identity numbers (GB 11643): 17 digits, a birth date inside them, and an
/// ISO 7064 MOD 11-2 check character.
fn is_cn_id_card(run: &str) -> bool {
    let b = run.as_bytes();
    if b.len() != 18 || !b[..17].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let number = |r: std::ops::Range<usize>| run[r].parse::<u32>().unwrap_or(0);
    let (year, month, day) = (number(6..10), number(10..12), number(12..14));
    if !(1900..=2099).contains(&year) || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return false;
    }
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = b[..17].iter().zip(WEIGHTS).map(|(d, w)| u32::from(d - b'0') * w).sum();
    let check = b"10X98765432"[(sum % 11) as usize];
    b[17].to_ascii_uppercase() == check
}

/// Payment cards: 16 to 19 digits, an issuer prefix (UnionPay 62, Visa 4, Mastercard
/// 51–55 and 2221–2720, JCB 35) and a valid Luhn check digit.
fn is_bank_card(run: &str) -> bool {
    let b = run.as_bytes();
    if !(16..=19).contains(&b.len()) || !b.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let prefix2 = run[..2].parse::<u32>().unwrap_or(0);
    let prefix4 = run[..4].parse::<u32>().unwrap_or(0);
    let issuer = prefix2 == 62
        || b[0] == b'4'
        || (51..=55).contains(&prefix2)
        || (2221..=2720).contains(&prefix4)
        || prefix2 == 35;
    let luhn: u32 = b
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let d = u32::from(d - b'0');
            if i % 2 == 1 { if d * 2 > 9 { d * 2 - 9 } else { d * 2 } } else { d }
        })
        .sum();
    issuer && luhn.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redact(rules: &[&str], text: &str) -> (String, bool) {
        let rules: Vec<String> = rules.iter().map(|r| (*r).to_owned()).collect();
        let redactor = Redactor::new(&rules, &[]).unwrap();
        let mut text = text.to_owned();
        let changed = redactor.apply(&mut text);
        (text, changed)
    }

    #[test]
    fn mobile_numbers_keep_their_ends() {
        assert_eq!(
            redact(&["cn_mobile"], "用户手机 13812345678 下单, tel=15900001111."),
            ("用户手机 138****5678 下单, tel=159****1111.".to_owned(), true)
        );
        for untouched in
            ["12812345678", "138123456789", "id13812345678", "blk_-13812345678", "1381234567"]
        {
            assert_eq!(redact(&["cn_mobile"], untouched), (untouched.to_owned(), false));
        }
    }

    #[test]
    fn id_cards_need_a_date_and_a_valid_check_character() {
        // 11010519491231002X is the standard's own example.
        assert_eq!(
            redact(&["cn_id_card"], "身份证:11010519491231002X 已实名").0,
            "身份证:110105********002X 已实名"
        );
        assert!(!redact(&["cn_id_card"], "id=110105194912310021").1, "wrong check digit");
        assert!(!redact(&["cn_id_card"], "id=110105194913310021").1, "month 13, valid check");
    }

    #[test]
    fn bank_cards_need_an_issuer_and_luhn() {
        assert_eq!(
            redact(&["bank_card"], "card 6222021234567890128 paid").0,
            "card 622202*********0128 paid"
        );
        assert_eq!(redact(&["bank_card"], "visa 4111111111111111").0, "visa 411111******1111");
        assert!(!redact(&["bank_card"], "n 4111111111111112").1, "Luhn fails");
        assert!(!redact(&["bank_card"], "n 9111111111111110").1, "no such issuer");
        let hdfs = "Receiving block blk_-1608999687919862906 src: /10.250.19.102:54106";
        assert_eq!(redact(&["all"], hdfs), (hdfs.to_owned(), false));
    }

    #[test]
    fn bearer_tokens_and_password_pairs() {
        assert_eq!(
            redact(&["bearer_token"], "Authorization: Bearer eyJhbGciOi.J9x_y-z== ok").0,
            "Authorization: Bearer [REDACTED] ok"
        );
        assert_eq!(
            redact(&["password"], r#"login user=bob password=hunter2&x=1 PWD: "a b" api_key='k'"#)
                .0,
            r#"login user=bob password=[REDACTED]&x=1 PWD: [REDACTED] api_key=[REDACTED]"#
        );
        assert!(!redact(&["password"], "passwords are rotated").1);
    }

    #[test]
    fn custom_rules_and_config_errors() {
        let custom =
            [("email".to_owned(), r"[\w.+-]+@[\w-]+\.[\w.]+".to_owned(), "[email]".to_owned())];
        let redactor = Redactor::new(&["all".to_owned()], &custom).unwrap();
        let mut text = "mail bob@example.com from 13812345678".to_owned();
        assert!(redactor.apply(&mut text));
        assert_eq!(text, "mail [email] from 138****5678");
        let mut clean = "nothing to see".to_owned();
        assert!(!redactor.apply(&mut clean));

        assert!(
            Redactor::new(&["phone".to_owned()], &[])
                .unwrap_err()
                .contains("unknown rule \"phone\"")
        );
        let bad = [("x".to_owned(), "(".to_owned(), String::new())];
        assert!(Redactor::new(&[], &bad).unwrap_err().contains("redact.rules: x: invalid pattern"));
        let taken = [("password".to_owned(), "a".to_owned(), String::new())];
        assert!(Redactor::new(&[], &taken).unwrap_err().contains("already taken"));
        assert!(Redactor::new(&[], &[]).unwrap().is_empty());
    }
}
