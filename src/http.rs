//! The HTTP client policy for everything schild sends out of the hospital:
//! feed pulls ([`crate::feeds`]) and sightings ([`crate::sightings`]).
//!
//! TLS is rustls with the ring provider and the platform verifier
//! (the system's trust store); certificates are always verified. Errors and
//! logs name a URL only as [`redact`] prints it.

use std::sync::Once;
use std::time::Duration;

use reqwest::Url;

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

/// The HTTP client for everything schild sends out of the hospital (feed
/// pulls, sightings): rustls with ring, our User-Agent, connect and total
/// timeouts, and no redirect from https to http.
pub fn client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    install_crypto_provider();
    reqwest::Client::builder()
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
}

/// A URL as it may appear in logs and errors: no user info, no query.
pub fn redact(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.to_string()
}
