//! The search language as Lucene query strings, for Grafana's Elasticsearch panels over the
//! indexes Sluice's Elasticsearch sink writes (its mapping: keyword fields by the same names,
//! event fields under `event.`, the message analysed by `cjk`, so a quoted Chinese phrase is
//! a phrase of bigrams there as it is a substring here).
//!
//! Translated: words and phrases (as message phrases), `field:value`, `field:glob*`, AND, OR,
//! NOT, parentheses, and `$variables` as values (left unquoted, so Grafana can expand a
//! multi-value variable into `(a OR b)`). Refused: ranges (`ts:` is the dashboard's time
//! picker; `offset:` and `source:` have no field there) and `id:`.

use sluice_query::syntax::Expr;

/// `query` as Lucene, or why it cannot be.
pub fn translate(query: &str) -> Result<String, String> {
    let schema = sluice_query::schema::LogSchema::new();
    let expr =
        sluice_query::syntax::parse(query, |f| schema.is_filter(f)).map_err(|e| e.to_string())?;
    match expr {
        None => Ok("*".into()),
        Some(e) => lucene(&e),
    }
}

fn lucene(e: &Expr) -> Result<String, String> {
    Ok(match e {
        Expr::Text(t) | Expr::Phrase(t) => format!("message:{}", quoted(t)),
        Expr::Field { field, value } => {
            let value = match field.as_str() {
                "level" => sluice_proto::level::canonical(value).unwrap_or(value).to_owned(),
                _ => value.clone(),
            };
            let value = if is_variable(&value) { value } else { quoted(&value) };
            format!("{}:{value}", es_field(field)?)
        }
        Expr::Wildcard { field, pattern } => {
            let escaped: String = pattern
                .chars()
                .flat_map(|c| {
                    let special = "+-&|!(){}[]^\"~:\\/ ".contains(c);
                    special.then_some('\\').into_iter().chain([c])
                })
                .collect();
            format!("{}:{escaped}", es_field(field)?)
        }
        Expr::Range { field, .. } => {
            return Err(format!(
                "{field}: ranges do not translate to the Elasticsearch panels (the dashboard's time range sets the time)"
            ));
        }
        Expr::And(parts) => join(parts, " AND ")?,
        Expr::Or(parts) => join(parts, " OR ")?,
        Expr::Not(inner) => format!("NOT {}", lucene(inner)?),
    })
}

fn join(parts: &[Expr], op: &str) -> Result<String, String> {
    let parts: Vec<String> = parts.iter().map(lucene).collect::<Result<_, _>>()?;
    Ok(format!("({})", parts.join(op)))
}

/// The search language's event fields and where the Elasticsearch sink's mapping puts them.
const EVENT_FIELDS: [(&str, &str); 5] = [
    ("reason", "event.reason"),
    ("event_type", "event.type"),
    ("object", "event.object"),
    ("object_kind", "event.object_kind"),
    ("reporter", "event.reporter"),
];

/// The field of the Elasticsearch sink's mapping a search field is.
pub fn es_field(field: &str) -> Result<String, String> {
    if let Some((_, es)) = EVENT_FIELDS.iter().find(|(f, _)| *f == field) {
        return Ok((*es).to_owned());
    }
    match field {
        "id" | "source" | "offset" => {
            Err(format!("{field}: has no field in the Elasticsearch indexes"))
        }
        f => Ok(f.to_owned()),
    }
}

/// The search field an Elasticsearch field is: [`es_field`] backwards.
pub fn search_field(es: &str) -> String {
    EVENT_FIELDS.iter().find(|(_, e)| *e == es).map_or(es, |(f, _)| f).to_owned()
}

fn is_variable(v: &str) -> bool {
    v.strip_prefix('$').is_some_and(|n| {
        let n = n.strip_prefix('{').and_then(|n| n.strip_suffix('}')).unwrap_or(n);
        !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::translate;

    #[test]
    fn the_language_becomes_lucene() {
        let cases = [
            ("", "*"),
            ("支付失败", "message:\"支付失败\""),
            ("\"db timeout\" level:ERROR", "(message:\"db timeout\" AND level:\"error\")"),
            ("namespace:$namespace AND -pod:web-*", "(namespace:$namespace AND NOT pod:web\\-*)"),
            (
                "reason:BackOff OR event_type:Warning",
                "(event.reason:\"BackOff\" OR event.type:\"Warning\")",
            ),
            ("labels.app:pay", "labels.app:\"pay\""),
        ];
        for (q, want) in cases {
            assert_eq!(translate(q).unwrap(), want, "{q}");
        }
    }

    #[test]
    fn what_has_no_counterpart_is_refused_by_name() {
        assert!(translate("ts:[now-1h TO now]").unwrap_err().contains("ts: ranges"));
        assert!(
            translate("id:0123456789abcdef0123456789abcdef")
                .unwrap_err()
                .contains("id: has no field")
        );
    }
}
