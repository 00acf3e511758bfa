//! The HTTP client policy for everything schild sends out of the hospital:
//! feed pulls ([`crate::feeds`]) and sightings ([`crate::sightings`]).
//!
//! TLS is rustls with the ring provider and the platform verifier
//! (the system's trust store), plus the hospital's own CA where the config
//! names one (`ca_file`), and a client certificate for mutual TLS;
//! certificates are always verified. Errors and logs name a URL only as
//! [`redact`] prints it.

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::Duration;

use reqwest::Url;

/// TLS for one HTTPS client, beyond the system's trust store: the
/// hospital's own CA, and a client certificate for a MISP that requires
/// mutual TLS. Paths only; [`client`] reads them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TlsClient {
    /// PEM bundle of CA certificates trusted in addition to the system's.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate (chain) and its PEM private key, sent when asked.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

impl TlsClient {
    /// `self` where it says something, `default` where it does not.
    pub fn or(&self, default: &TlsClient) -> TlsClient {
        TlsClient {
            ca_file: self.ca_file.clone().or_else(|| default.ca_file.clone()),
            client_cert: self
                .client_cert
                .clone()
                .or_else(|| default.client_cert.clone()),
        }
    }

    /// The files with the key (under `section`) that names each.
    pub fn files(&self, section: &str) -> Vec<(String, PathBuf)> {
        let mut v = Vec::new();
        if let Some(p) = &self.ca_file {
            v.push((format!("{section}.ca_file"), p.clone()));
        }
        if let Some((c, k)) = &self.client_cert {
            v.push((format!("{section}.client_cert_file"), c.clone()));
            v.push((format!("{section}.client_key_file"), k.clone()));
        }
        v
    }
}

/// Why an HTTPS client could not be set up. Names the file; a key file's
/// content never appears.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: no PEM certificate in it", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: not a usable PEM file: {source}", path.display())]
    Pem {
        path: PathBuf,
        source: reqwest::Error,
    },
    #[error("{} and {}: not a PEM certificate and its private key: {source}", cert.display(), key.display())]
    Identity {
        cert: PathBuf,
        key: PathBuf,
        source: reqwest::Error,
    },
    #[error("cannot set up the HTTP client: {0}")]
    Build(#[source] reqwest::Error),
}

/// `schild/<version>`, sent with every request.
pub const USER_AGENT: &str = concat!("schild/", env!("CARGO_PKG_VERSION"));

/// Connect timeout: a feed server that does not accept within this is down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Install ring as the process's rustls provider (reqwest is built with
/// `rustls-no-provider`). If another part of the process installed one
/// first, that one is used.
fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

fn read(path: &Path) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path).map_err(|source| ClientError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The HTTP client for everything schild sends out of the hospital (feed
/// pulls, sightings): rustls with ring, the system's roots and `tls`'s CA,
/// `tls`'s client certificate, our User-Agent, connect and total timeouts,
/// and no redirect from https to http.
pub fn client(timeout: Duration, tls: &TlsClient) -> Result<reqwest::Client, ClientError> {
    install_crypto_provider();
    let mut builder = reqwest::Client::builder();
    if let Some(path) = &tls.ca_file {
        let certs = reqwest::Certificate::from_pem_bundle(&read(path)?).map_err(|source| {
            ClientError::Pem {
                path: path.clone(),
                source,
            }
        })?;
        if certs.is_empty() {
            return Err(ClientError::NoCertificate { path: path.clone() });
        }
        // Added to the system's store, not instead of it.
        builder = builder.tls_certs_merge(certs);
    }
    if let Some((cert, key)) = &tls.client_cert {
        let mut pem = read(cert)?;
        pem.push(b'\n');
        pem.extend_from_slice(&read(key)?);
        let identity =
            reqwest::Identity::from_pem(&pem).map_err(|source| ClientError::Identity {
                cert: cert.clone(),
                key: key.clone(),
                source,
            })?;
        builder = builder.identity(identity);
    }
    builder
        .user_agent(USER_AGENT)
        .connect_timeout(CONNECT_TIMEOUT.min(timeout))
        .timeout(timeout)
        // Requests go to configured URLs only; a redirect to another scheme
        // would let a compromised server downgrade us (and see the key).
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            if attempt.previous().len() >= 5 {
                attempt.error("too many redirects")
            } else if attempt.previous().first().map(Url::scheme) == Some("https")
                && attempt.url().scheme() != "https"
            {
                attempt.error("refusing a redirect from https to http")
            } else {
                attempt.follow()
            }
        }))
        .build()
        .map_err(ClientError::Build)
}

/// A URL as it may appear in logs and errors: no user info, no query.
pub fn redact(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.to_string()
}
