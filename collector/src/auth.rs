//! Who may push: TLS for the channel, a bearer token per agent, and what a client of the
//! `_bulk` and OTLP receivers may write ([`IngestAuthenticator`], [`IngestGrant`]).
//!
//! Tokens come from a file of `<agent name> <token> [clusters=<glob>,…]` lines (a token bound
//! to clusters writes only their records), so they can be mounted from a
//! Kubernetes secret and never appear on a command line. A token is compared in constant time
//! against every known token, and neither a token nor the `authorization` header is ever
//! logged: a refusal names only the peer address.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use subtle::ConstantTimeEq;
use tonic::service::Interceptor;
use tonic::transport::{Identity, ServerTlsConfig};
use tonic::{Request, Status};

use crate::CollectorError;

/// Short tokens can be guessed; 16 characters of a random alphabet cannot.
pub const MIN_TOKEN_CHARS: usize = 16;

/// The agents allowed to push, by token.
#[derive(Clone)]
pub struct AgentTokens {
    /// In file order.
    agents: Arc<Vec<Agent>>,
}

struct Agent {
    name: String,
    token: String,
    /// `clusters=` globs: the only clusters its records may carry; `None`: any.
    clusters: Option<Vec<glob::Pattern>>,
}

/// Who an agent's token says it is, put on its gRPC requests by [`TokenCheck`]: a token bound
/// to clusters (a remote cluster's) cannot write records of another cluster.
#[derive(Debug, Clone)]
pub struct AgentGrant {
    pub name: String,
    clusters: Option<Vec<glob::Pattern>>,
}

impl AgentGrant {
    /// Whether the token is bound to clusters at all (then records are checked).
    pub fn is_bound(&self) -> bool {
        self.clusters.is_some()
    }

    pub fn allows_cluster(&self, cluster: &str) -> bool {
        self.clusters.as_ref().is_none_or(|patterns| patterns.iter().any(|p| p.matches(cluster)))
    }
}

impl std::fmt::Debug for AgentTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.agents.iter().map(|a| a.name.as_str()).collect();
        f.debug_struct("AgentTokens").field("agents", &names).finish_non_exhaustive()
    }
}

impl AgentTokens {
    /// Reads `<agent name> <token> [clusters=<glob>,…]` lines; blank lines and `#` comments
    /// are skipped.
    pub fn load(path: &Path) -> Result<Self, CollectorError> {
        let text = fs::read_to_string(path).map_err(CollectorError::io("read", path))?;
        Self::parse(&text, path)
    }

    fn parse(text: &str, path: &Path) -> Result<Self, CollectorError> {
        let bad = |line: usize, reason: String| CollectorError::Config {
            path: path.to_owned(),
            reason: format!("line {line}: {reason}"),
        };
        let mut agents: Vec<Agent> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some(name), Some(token), bound, None) =
                (words.next(), words.next(), words.next(), words.next())
            else {
                return Err(bad(
                    line_no,
                    "expected `<agent name> <token> [clusters=<glob>,…]`".to_owned(),
                ));
            };
            let clusters = match bound.map(|b| b.strip_prefix("clusters=")) {
                None => None,
                Some(Some(list)) if !list.is_empty() => Some(
                    list.split(',')
                        .map(|c| {
                            glob::Pattern::new(c).map_err(|e| {
                                bad(line_no, format!("clusters: {c:?} is not a glob: {e}"))
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                ),
                Some(_) => {
                    return Err(bad(
                        line_no,
                        format!("the third word of {name:?} must be clusters=<glob>,…"),
                    ));
                }
            };
            if token.chars().count() < MIN_TOKEN_CHARS {
                return Err(bad(
                    line_no,
                    format!("the token of {name:?} is shorter than {MIN_TOKEN_CHARS} characters"),
                ));
            }
            if agents.iter().any(|a| a.name == name) {
                return Err(bad(line_no, format!("agent {name:?} is listed twice")));
            }
            if agents.iter().any(|a| a.token == token) {
                return Err(bad(
                    line_no,
                    format!("the token of {name:?} is already another agent's"),
                ));
            }
            agents.push(Agent { name: name.to_owned(), token: token.to_owned(), clusters });
        }
        if agents.is_empty() {
            return Err(CollectorError::Config {
                path: path.to_owned(),
                reason: "no agent tokens in the file".to_owned(),
            });
        }
        Ok(Self { agents: Arc::new(agents) })
    }

    /// The client named by an HTTP `Authorization` header (see [`http_token`]).
    pub fn http_client(&self, authorization: Option<&str>) -> Result<&str, &'static str> {
        self.agent(&http_token(authorization)?).map(|a| a.name.as_str()).ok_or("unknown token")
    }

    /// The agent whose token `presented` is, if any.
    fn agent(&self, presented: &str) -> Option<&Agent> {
        let presented = presented.as_bytes();
        // Every token is compared, so the time taken says nothing about which one matched.
        let mut found = None;
        for agent in self.agents.iter() {
            if bool::from(agent.token.as_bytes().ct_eq(presented)) {
                found = Some(agent);
            }
        }
        found
    }
}

/// The token of an HTTP `Authorization` header: `Bearer <token>`, or `Basic` with the token as
/// the password (what Fluent Bit's and Filebeat's `es` outputs send).
pub fn http_token(authorization: Option<&str>) -> Result<String, &'static str> {
    let header = authorization.ok_or("no Authorization header")?;
    let (scheme, value) = header.split_once(' ').ok_or("malformed Authorization header")?;
    if scheme.eq_ignore_ascii_case("bearer") {
        Ok(value.trim().to_owned())
    } else if scheme.eq_ignore_ascii_case("basic") {
        use base64::Engine;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(value.trim())
            .map_err(|_| "malformed Basic credentials")?;
        let text = String::from_utf8(decoded).map_err(|_| "malformed Basic credentials")?;
        text.split_once(':')
            .map(|(_, password)| password.to_owned())
            .ok_or("malformed Basic credentials")
    } else {
        Err("the Authorization scheme must be Bearer or Basic")
    }
}

/// What an authenticated client of the `_bulk` and OTLP receivers may write.
#[derive(Debug, Clone)]
pub struct IngestGrant {
    /// The client's name, for the WAL and the logs.
    pub client: String,
    /// Namespaces it may write (globs); `None`: any.
    namespaces: Option<Vec<glob::Pattern>>,
}

impl IngestGrant {
    /// A client that may write to any namespace.
    pub fn anywhere(client: &str) -> Self {
        Self { client: client.to_owned(), namespaces: None }
    }

    /// A client that may write only to namespaces matching `patterns`; a pattern that is not
    /// a glob matches nothing.
    pub fn only(client: &str, patterns: &[String]) -> Self {
        let namespaces = patterns.iter().filter_map(|p| glob::Pattern::new(p).ok()).collect();
        Self { client: client.to_owned(), namespaces: Some(namespaces) }
    }

    /// Whether a record of `namespace` may be written.
    pub fn allows(&self, namespace: &str) -> bool {
        self.namespaces
            .as_ref()
            .is_none_or(|patterns| patterns.iter().any(|p| p.matches(namespace)))
    }

    /// Whether the client may write anything at all.
    pub fn writes_anything(&self) -> bool {
        self.namespaces.as_ref().is_none_or(|patterns| !patterns.is_empty())
    }
}

/// Turns the token a client of the `_bulk` and OTLP receivers presents into what it may write.
/// The agents' tokens file grants every namespace; the `sluice` binary adapts its users file.
pub trait IngestAuthenticator: Send + Sync {
    fn grant(&self, token: &str) -> Result<IngestGrant, &'static str>;
}

impl IngestAuthenticator for AgentTokens {
    fn grant(&self, token: &str) -> Result<IngestGrant, &'static str> {
        self.agent(token).map(|a| IngestGrant::anywhere(&a.name)).ok_or("unknown token")
    }
}

/// Rejects gRPC calls without a known bearer token.
#[derive(Debug, Clone)]
pub struct TokenCheck {
    pub tokens: AgentTokens,
}

impl Interceptor for TokenCheck {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let peer = request.remote_addr().map_or_else(|| "unknown".to_owned(), |a| a.to_string());
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let agent = presented.and_then(|token| self.tokens.agent(token.trim()));
        match agent {
            Some(a) => {
                let grant = AgentGrant { name: a.name.clone(), clusters: a.clusters.clone() };
                request.extensions_mut().insert(grant);
                Ok(request)
            }
            None => {
                let reason = if presented.is_some() { "unknown token" } else { "no bearer token" };
                tracing::warn!(%peer, reason, "refused an agent");
                metrics::counter!("sluice_collector_unauthenticated_total").increment(1);
                Err(Status::unauthenticated(format!(
                    "{reason}: send `authorization: Bearer <token>` with a token from the collector's agent tokens file"
                )))
            }
        }
    }
}

/// The collector's certificate and key, PEM files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    pub fn server_config(&self) -> Result<ServerTlsConfig, CollectorError> {
        let cert = fs::read(&self.cert).map_err(CollectorError::io("read", &self.cert))?;
        let key = fs::read(&self.key).map_err(CollectorError::io("read", &self.key))?;
        Ok(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)))
    }
}

/// An HTTP/1 client for `http://` and `https://` URLs, with bodies sent whole.
pub type HttpsClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Full<hyper::body::Bytes>,
>;

/// The HTTP(S) client of the collector and of crates built on it (sinks, notifiers): rustls on
/// ring, the one crypto provider, trusting the system's roots and, when given, a CA file's
/// certificates (a server with a private certificate).
pub fn https_client(ca_file: Option<&Path>) -> Result<HttpsClient, String> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(client_tls(ca_file)?)
        .https_or_http()
        .enable_http1()
        .build();
    Ok(hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(https))
}

fn client_tls(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        let pem =
            fs::read(path).map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?;
        let mut added = 0;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| format!("CA file {}: {e}", path.display()))?;
            roots.add(cert).map_err(|e| format!("CA file {}: {e}", path.display()))?;
            added += 1;
        }
        if added == 0 {
            return Err(format!("CA file {} holds no PEM certificate", path.display()));
        }
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AgentTokens, String> {
        AgentTokens::parse(text, Path::new("tokens.txt")).map_err(|e| e.to_string())
    }

    #[test]
    fn finds_the_agent_of_a_token() {
        let tokens =
            parse("# agents\nnode-a 0123456789abcdef0123\n\nnode-b fedcba9876543210fedc\n")
                .unwrap();
        let name = |t: &str| tokens.agent(t).map(|a| a.name.clone());
        assert_eq!(name("fedcba9876543210fedc").as_deref(), Some("node-b"));
        assert_eq!(name("0123456789abcdef0123").as_deref(), Some("node-a"));
        assert_eq!(name("0123456789abcdef012"), None);
        assert_eq!(name(""), None);
        assert!(!format!("{tokens:?}").contains("0123456789abcdef"), "Debug hides tokens");
    }

    #[test]
    fn errors_name_the_file_and_line_but_not_the_token() {
        let short = parse("a 0123456789abcdef\nb short-secret\n").unwrap_err();
        assert!(short.contains("tokens.txt") && short.contains("line 2"), "{short}");
        assert!(!short.contains("short-secret"), "{short}");
        assert!(parse("a 0123456789abcdef x\n").unwrap_err().contains("line 1"));
        assert!(parse("a 0123456789abcdef clusters=\n").unwrap_err().contains("clusters="));
        assert!(parse("a 0123456789abcdef clusters=b c\n").unwrap_err().contains("line 1"));
        assert!(parse("a 0123456789abcdef\na 0123456789abcdeX\n").unwrap_err().contains("twice"));
        assert!(parse("a 0123456789abcdef\nb 0123456789abcdef\n").unwrap_err().contains("another"));
        assert!(parse("# nothing\n").unwrap_err().contains("no agent tokens"));
    }

    #[test]
    fn a_token_bound_to_clusters_grants_only_them() {
        let tokens = parse(
            "central 0123456789abcdef0123
remote fedcba9876543210fedc clusters=cluster-b,edge-*
",
        )
        .unwrap();
        let grant = |t: &str| {
            let a = tokens.agent(t).unwrap();
            AgentGrant { name: a.name.clone(), clusters: a.clusters.clone() }
        };
        let remote = grant("fedcba9876543210fedc");
        assert!(remote.is_bound());
        assert!(remote.allows_cluster("cluster-b") && remote.allows_cluster("edge-7"));
        assert!(!remote.allows_cluster("cluster-a") && !remote.allows_cluster(""));
        let central = grant("0123456789abcdef0123");
        assert!(!central.is_bound() && central.allows_cluster("anything"));
    }

    #[test]
    fn grants_say_which_namespaces_a_client_may_write() {
        let any = IngestGrant::anywhere("fluent-bit");
        assert!(any.allows("prod") && any.allows("") && any.writes_anything());
        let dev = IngestGrant::only("shipper", &["dev".to_owned(), "team-*".to_owned()]);
        assert!(dev.allows("dev") && dev.allows("team-pay"));
        assert!(!dev.allows("prod") && !dev.allows("") && !dev.allows("development"));
        let none = IngestGrant::only("reader", &[]);
        assert!(!none.writes_anything() && !none.allows("dev"));
    }
}
