//! `{{ name }}` in a rule's summary, replaced by the alert's labels and values. Names are
//! checked when the file loads, so a typo is an error then, not an empty string at 3 am. Not a
//! template engine: a summary is one line with a few values in it.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Name(String),
}

impl Template {
    /// Parses `text`; every `{{ name }}` must be one of `known`, where `labels.*` stands for
    /// any `labels.<name>` (a metric rule's series labels, unknown until it runs).
    pub fn new(text: &str, known: &[&str]) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_owned()));
            }
            let end = rest[start..].find("}}").ok_or("a `{{` without its `}}`")? + start;
            let name = rest[start + 2..end].trim();
            let prefixed = |k: &&str| k.strip_suffix('*').is_some_and(|p| name.starts_with(p));
            if !known.contains(&name) && !known.iter().any(prefixed) {
                return Err(format!("unknown name {name}; known here: {}", known.join(", ")));
            }
            parts.push(Part::Name(name.to_owned()));
            rest = &rest[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Self { parts })
    }

    pub fn render(&self, values: &BTreeMap<String, String>) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.as_str(),
                Part::Name(n) => values.get(n).map_or("", String::as_str),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_replaced_and_unknown_ones_refused() {
        let t =
            Template::new("{{ namespace }}: {{count}} 支付失败", &["namespace", "count"]).unwrap();
        let values = BTreeMap::from([
            ("namespace".to_owned(), "pay".to_owned()),
            ("count".to_owned(), "4".to_owned()),
        ]);
        assert_eq!(t.render(&values), "pay: 4 支付失败");
        assert!(Template::new("{{ nope }}", &["count"]).unwrap_err().contains("unknown name nope"));
        assert!(Template::new("{{ count", &["count"]).is_err());
    }
}
