use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Where and how the sink writes.
#[derive(Clone)]
pub struct RemoteWriteConfig {
    /// The receiver's URL, such as `http://127.0.0.1:9090/api/v1/write`.
    pub url: String,
    /// Sent as `Authorization: Bearer …` when set.
    pub bearer_token: Option<String>,
    /// PEM certificates to trust for `https://` besides the system's.
    pub ca_file: Option<PathBuf>,
    /// A request carries at most this many samples (Prometheus's own senders send 2000).
    pub max_samples: usize,
    pub flush_interval: Duration,
    /// Holds the sink's cursor.
    pub state_dir: PathBuf,
}

// The token never reaches logs.
impl fmt::Debug for RemoteWriteConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteWriteConfig")
            .field("url", &self.url)
            .field("bearer_token", &self.bearer_token.as_ref().map(|_| "…"))
            .field("max_samples", &self.max_samples)
            .finish_non_exhaustive()
    }
}

impl RemoteWriteConfig {
    pub fn new(url: impl Into<String>, state_dir: PathBuf) -> Self {
        Self {
            url: url.into(),
            bearer_token: None,
            ca_file: None,
            max_samples: 2000,
            flush_interval: Duration::from_secs(1),
            state_dir,
        }
    }
}
