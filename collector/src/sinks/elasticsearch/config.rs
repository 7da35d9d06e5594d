use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Where and how the sink writes.
#[derive(Clone)]
pub struct ElasticsearchConfig {
    /// Base URL, such as `http://127.0.0.1:9200`.
    pub url: String,
    /// Index name template: `{cluster}`, `{namespace}`, `{pod}`, `{container}` and the
    /// record's UTC date as `{yyyy.MM.dd}` (or `{yyyy-MM-dd}`, `{yyyy.MM}`); lowercased.
    pub index: String,
    pub auth: ElasticsearchAuth,
    /// PEM certificates to trust for `https://` besides the system's.
    pub ca_file: Option<PathBuf>,
    /// Write to data streams named by `index` (which then needs no date: a data stream rolls
    /// its backing indexes over by itself).
    pub data_stream: bool,
    /// A bulk request carries at most this much (uncompressed NDJSON).
    pub batch_bytes: usize,
    pub flush_interval: Duration,
    /// Holds the sink's cursor and its dead-letter file.
    pub state_dir: PathBuf,
}

#[derive(Clone, Default)]
pub enum ElasticsearchAuth {
    #[default]
    None,
    Basic {
        user: String,
        password: String,
    },
    /// The base64 `id:key` Elasticsearch gives for `Authorization: ApiKey …`.
    ApiKey(String),
}

// Credentials never reach logs.
impl fmt::Debug for ElasticsearchConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = match &self.auth {
            ElasticsearchAuth::None => "none",
            ElasticsearchAuth::Basic { .. } => "basic",
            ElasticsearchAuth::ApiKey(_) => "api key",
        };
        f.debug_struct("ElasticsearchConfig")
            .field("url", &self.url)
            .field("index", &self.index)
            .field("auth", &auth)
            .field("batch_bytes", &self.batch_bytes)
            .finish_non_exhaustive()
    }
}

impl ElasticsearchConfig {
    pub fn new(url: impl Into<String>, state_dir: PathBuf) -> Self {
        Self {
            url: url.into().trim_end_matches('/').to_owned(),
            index: "logs-{namespace}-{yyyy.MM.dd}".to_owned(),
            auth: ElasticsearchAuth::None,
            ca_file: None,
            data_stream: false,
            batch_bytes: 5 << 20,
            flush_interval: Duration::from_secs(1),
            state_dir,
        }
    }

    /// The literal part of the template before its first placeholder, for the index
    /// template's pattern.
    pub(super) fn index_prefix(&self) -> &str {
        self.index.split('{').next().unwrap_or_default()
    }
}
