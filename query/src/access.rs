//! Who may read what: users and their tokens from a file, and the [`Scope`] every query path
//! ANDs into its query.
//!
//! The scope is applied where queries are built ([`crate::search::Prepared`]), never in the
//! HTTP layer, so search, histogram, facets, context, tail and export cannot disagree, and no
//! query text can widen it: the user's query is one clause of a conjunction whose other
//! clause is the scope. Authentication is behind [`Authenticator`] so that an OIDC verifier
//! (claims → [`Principal`]) can stand beside the token file.

use std::fmt;
use std::path::{Path, PathBuf};

use axum::http::{HeaderMap, header};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tantivy::Term;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption};

use crate::QueryError;
use crate::compile::glob_query;
use crate::schema::LogSchema;

/// The clusters and namespaces a caller may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Admins, and everyone when no users are configured.
    All,
    /// Records whose cluster matches one of `clusters` and whose namespace matches one of
    /// `namespaces` (globs; `*` alone means any, including none).
    Only { clusters: Vec<String>, namespaces: Vec<String> },
}

impl Scope {
    /// The query that keeps only what the scope allows; `None` for [`Scope::All`].
    pub fn filter(&self, schema: &LogSchema) -> Result<Option<Box<dyn Query>>, QueryError> {
        let Scope::Only { clusters, namespaces } = self else { return Ok(None) };
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for (field, patterns) in [(schema.cluster, clusters), (schema.namespace, namespaces)] {
            if patterns.iter().any(|p| p == "*") {
                continue;
            }
            clauses.push((Occur::Must, any_of(field, patterns)?));
        }
        if clauses.is_empty() {
            return Ok(None);
        }
        Ok(Some(Box::new(BooleanQuery::new(clauses))))
    }
}

/// One of the patterns; an empty list matches nothing.
fn any_of(field: Field, patterns: &[String]) -> Result<Box<dyn Query>, QueryError> {
    let mut should: Vec<(Occur, Box<dyn Query>)> = Vec::new();
    for p in patterns {
        let q: Box<dyn Query> = if p.contains(['*', '?']) {
            glob_query(field, p)?
        } else {
            Box::new(TermQuery::new(Term::from_field_text(field, p), IndexRecordOption::Basic))
        };
        should.push((Occur::Should, q));
    }
    if should.is_empty() {
        return Ok(Box::new(tantivy::query::EmptyQuery));
    }
    Ok(Box::new(BooleanQuery::new(should)))
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub scope: Scope,
    /// May read `/metrics`, which names every tailed file and counts every namespace's
    /// records: admins, and users given `metrics: true` (a Prometheus scraper's token).
    pub metrics: bool,
}

impl Principal {
    /// The caller when no users are configured: the API is open, as on a laptop.
    pub fn anonymous_admin() -> Self {
        Self { name: "anonymous".to_owned(), scope: Scope::All, metrics: true }
    }
}

/// Turns the credentials of a request into a [`Principal`].
pub trait Authenticator: Send + Sync {
    /// `bearer` is the token of `Authorization: Bearer <token>`, if the request had one.
    fn authenticate(&self, bearer: Option<&str>) -> Result<Principal, QueryError>;

    /// The caller of an HTTP request: its `Authorization` header, if any, must be
    /// `Bearer <token>` (the scheme in any case, as RFC 9110 has it).
    fn authenticate_request(&self, headers: &HeaderMap) -> Result<Principal, QueryError> {
        let header = headers.get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or(""));
        let bearer = match header.map(|h| h.split_once(' ')) {
            None => None,
            Some(Some((scheme, token))) if scheme.eq_ignore_ascii_case("bearer") => {
                Some(token.trim())
            }
            Some(_) => {
                return Err(QueryError::Unauthorized(
                    "the Authorization header must be `Bearer <token>`".to_owned(),
                ));
            }
        };
        self.authenticate(bearer)
    }
}

/// The users file (`--users`): names, tokens and what each may read.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Users {
    users: Vec<User>,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct User {
    name: String,
    token: String,
    #[serde(default)]
    admin: bool,
    #[serde(default = "any")]
    clusters: Vec<String>,
    #[serde(default)]
    namespaces: Vec<String>,
    /// May read `/metrics` without being an admin.
    #[serde(default)]
    metrics: bool,
    /// Namespaces (globs) the user's token may write through `_bulk` and OTLP; admins may
    /// write anywhere, everyone else nowhere unless listed here.
    #[serde(default)]
    ingest: Vec<String>,
}

/// What a token may write through the ingest endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestRights {
    pub name: String,
    /// Namespace globs; `None`: any (an admin).
    pub namespaces: Option<Vec<String>>,
}

fn any() -> Vec<String> {
    vec!["*".to_owned()]
}

// Tokens are secrets: Debug shows names only.
impl fmt::Debug for Users {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.users.iter().map(|u| &u.name)).finish()
    }
}

/// Why a users file was refused.
#[derive(Debug, thiserror::Error)]
#[error("invalid users file {path}: {reason}")]
pub struct UsersError {
    pub path: PathBuf,
    pub reason: String,
}

impl Users {
    pub fn load(path: &Path) -> Result<Self, UsersError> {
        let error = |reason: String| UsersError { path: path.to_owned(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
        Self::parse(&text).map_err(error)
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let users: Users = yaml_serde::from_str(text).map_err(|e| e.to_string())?;
        let mut names = std::collections::HashSet::new();
        for (i, u) in users.users.iter().enumerate() {
            let at = format!("users[{i}] ({})", u.name);
            if u.name.is_empty() {
                return Err(format!("users[{i}]: name is empty"));
            }
            if !names.insert(&u.name) {
                return Err(format!("{at}: the name is used twice"));
            }
            if u.token.len() < 16 {
                return Err(format!("{at}: token is shorter than 16 characters"));
            }
            // A scraper's or a shipper's user may read no records at all.
            if !u.admin && !u.metrics && u.ingest.is_empty() && u.namespaces.is_empty() {
                return Err(format!(
                    "{at}: a user who is not admin needs namespaces (use [\"*\"] for all), metrics: true or ingest"
                ));
            }
        }
        for (i, a) in users.users.iter().enumerate() {
            if users.users[i + 1..]
                .iter()
                .any(|b| bool::from(a.token.as_bytes().ct_eq(b.token.as_bytes())))
            {
                return Err(format!("users[{i}] ({}): another user has the same token", a.name));
            }
        }
        Ok(users)
    }
}

impl Authenticator for Users {
    fn authenticate(&self, bearer: Option<&str>) -> Result<Principal, QueryError> {
        let token = bearer.ok_or_else(|| {
            QueryError::Unauthorized("send Authorization: Bearer <token>".to_owned())
        })?;
        let user =
            self.user(token).ok_or_else(|| QueryError::Unauthorized("unknown token".to_owned()))?;
        let scope = if user.admin {
            Scope::All
        } else {
            Scope::Only { clusters: user.clusters.clone(), namespaces: user.namespaces.clone() }
        };
        Ok(Principal { name: user.name.clone(), scope, metrics: user.admin || user.metrics })
    }
}

impl Users {
    /// The user whose token `token` is. Every user is compared, in constant time, so timing
    /// tells nothing about the tokens.
    fn user(&self, token: &str) -> Option<&User> {
        let mut found = None;
        for u in &self.users {
            if bool::from(u.token.as_bytes().ct_eq(token.as_bytes())) {
                found = Some(u);
            }
        }
        found
    }

    /// What `token` may write; `None` for an unknown token.
    pub fn ingest_rights(&self, token: &str) -> Option<IngestRights> {
        let user = self.user(token)?;
        let namespaces = (!user.admin).then(|| user.ingest.clone());
        Some(IngestRights { name: user.name.clone(), namespaces })
    }
}

/// No users configured: everyone is an admin.
#[derive(Debug, Clone, Copy, Default)]
pub struct Open;

impl Authenticator for Open {
    fn authenticate(&self, _bearer: Option<&str>) -> Result<Principal, QueryError> {
        Ok(Principal::anonymous_admin())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
users:
  - name: ops
    token: ops-token-0123456789
    admin: true
  - name: dev
    token: dev-token-0123456789
    namespaces: [dev, "team-*"]
  - name: prometheus
    token: prom-token-0123456789
    metrics: true
  - name: shipper
    token: ship-token-0123456789
    ingest: [dev]
"#;

    #[test]
    fn a_request_names_its_caller_by_a_bearer_token() {
        let users = Users::parse(FILE).unwrap();
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, value.parse().unwrap());
            users.authenticate_request(&headers)
        };
        assert_eq!(with("Bearer ops-token-0123456789").unwrap().name, "ops");
        assert_eq!(with("bearer  dev-token-0123456789 ").unwrap().name, "dev");
        let err = with("Basic b3BzOnNlY3JldA==").unwrap_err().to_string();
        assert!(err.contains("must be `Bearer <token>`"), "{err}");
        assert!(with("ops-token-0123456789").is_err(), "a token without its scheme");
        assert!(with("Bearer wrong-token-0123456789").is_err());
        assert!(users.authenticate_request(&HeaderMap::new()).is_err(), "users set, no token");
        assert_eq!(Open.authenticate_request(&HeaderMap::new()).unwrap().name, "anonymous");
    }

    #[test]
    fn tokens_map_to_scopes() {
        let users = Users::parse(FILE).unwrap();
        assert_eq!(users.authenticate(Some("ops-token-0123456789")).unwrap().scope, Scope::All);
        let dev = users.authenticate(Some("dev-token-0123456789")).unwrap();
        assert_eq!(dev.name, "dev");
        assert_eq!(
            dev.scope,
            Scope::Only {
                clusters: vec!["*".into()],
                namespaces: vec!["dev".into(), "team-*".into()]
            }
        );
        assert!(matches!(users.authenticate(None), Err(QueryError::Unauthorized(_))));
        assert!(matches!(
            users.authenticate(Some("dev-token-012345678")),
            Err(QueryError::Unauthorized(_))
        ));
    }

    #[test]
    fn bad_files_name_the_problem() {
        for (text, want) in [
            ("users: [{name: a, token: short}]", "shorter than 16"),
            ("users: [{name: a, token: aaaaaaaaaaaaaaaaaaaa}]", "needs namespaces"),
            ("users: [{name: a, token: aaaaaaaaaaaaaaaaaaaa, admin: true, role: x}]", "role"),
            (
                "users: [{name: a, token: aaaaaaaaaaaaaaaaaaaa, admin: true}, {name: b, token: aaaaaaaaaaaaaaaaaaaa, admin: true}]",
                "same token",
            ),
        ] {
            let err = Users::parse(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn debug_never_shows_tokens() {
        let users = Users::parse(FILE).unwrap();
        let shown = format!("{users:?}");
        assert!(!shown.contains("token"), "{shown}");
        assert!(shown.contains("dev"));
    }

    #[test]
    fn only_admins_and_metrics_users_may_read_metrics() {
        let users = Users::parse(FILE).unwrap();
        let may = |token| users.authenticate(Some(token)).unwrap().metrics;
        assert!(may("ops-token-0123456789"));
        assert!(!may("dev-token-0123456789"));
        assert!(may("prom-token-0123456789"));
        let prometheus = users.authenticate(Some("prom-token-0123456789")).unwrap();
        assert_eq!(
            prometheus.scope,
            Scope::Only { clusters: vec!["*".into()], namespaces: vec![] }
        );
        assert!(Open.authenticate(None).unwrap().metrics, "no users: the API is open");
    }

    #[test]
    fn ingest_rights_are_admins_anywhere_and_listed_namespaces_for_others() {
        let users = Users::parse(FILE).unwrap();
        let rights = |token| users.ingest_rights(token).map(|r| r.namespaces);
        assert_eq!(rights("ops-token-0123456789"), Some(None));
        assert_eq!(rights("ship-token-0123456789"), Some(Some(vec!["dev".to_owned()])));
        assert_eq!(rights("dev-token-0123456789"), Some(Some(vec![])), "readers do not write");
        assert_eq!(rights("no-such-token-0123456789"), None);
    }
}
