//! Certificates made for a test (rcgen): an authority, another one, and the collector's
//! certificate for `collector.sluice.test` signed by the first.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

/// The collector's server name in [`Pki::cert`].
pub const SERVER_NAME: &str = "collector.sluice.test";

pub struct Pki {
    pub ca: PathBuf,
    pub other_ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// A server certificate for `127.0.0.1` and `localhost` by the first authority (a test's
    /// own SMTP or HTTPS server).
    pub loopback_cert: PathBuf,
    pub loopback_key: PathBuf,
}

impl Pki {
    /// `sluice collector`'s flags for TLS with this certificate and the agents' `tokens` file.
    pub fn collector_flags<'a>(&'a self, tokens: &'a Path) -> [&'a std::ffi::OsStr; 6] {
        [
            "--tls-cert".as_ref(),
            self.cert.as_os_str(),
            "--tls-key".as_ref(),
            self.key.as_os_str(),
            "--agent-tokens".as_ref(),
            tokens.as_os_str(),
        ]
    }
}

pub fn make_pki(dir: &Path) -> Pki {
    let authority = |name: &str| {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
    };
    let ca = authority("sluice test CA");
    let other = authority("someone else's CA");
    let key = KeyPair::generate().unwrap();
    let cert =
        CertificateParams::new(vec![SERVER_NAME.to_owned()]).unwrap().signed_by(&key, &ca).unwrap();
    let loopback_key = KeyPair::generate().unwrap();
    let loopback = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&loopback_key, &ca)
        .unwrap();
    let pki = Pki {
        loopback_cert: dir.join("loopback.pem"),
        loopback_key: dir.join("loopback-key.pem"),
        ca: dir.join("ca.pem"),
        other_ca: dir.join("other-ca.pem"),
        cert: dir.join("collector.pem"),
        key: dir.join("collector-key.pem"),
    };
    std::fs::write(&pki.ca, ca.pem()).unwrap();
    std::fs::write(&pki.other_ca, other.pem()).unwrap();
    std::fs::write(&pki.cert, cert.pem()).unwrap();
    std::fs::write(&pki.key, key.serialize_pem()).unwrap();
    std::fs::write(&pki.loopback_cert, loopback.pem()).unwrap();
    std::fs::write(&pki.loopback_key, loopback_key.serialize_pem()).unwrap();
    pki
}
