//! TSIG (RFC 8945) for zone transfers: the key file, request checks, and
//! signing of every message of a multi-message answer.
//!
//! hickory signs a single response message (`TSigResponseContext`); a
//! transfer of many messages needs each later message signed over the
//! previous MAC, the message and only the TSIG timers (RFC 8945 §5.3.1).
//! That chaining is done here, with hickory's HMAC and record types.
//!
//! The key file is BIND's `key` statement, so the same file can be
//! included in `named.conf` on the secondary:
//!
//! ```text
//! key "zdn-xfr" {
//!     algorithm hmac-sha256;
//!     secret "base64 secret";
//! };
//! ```

use std::path::{Path, PathBuf};

use hickory_server::proto::ProtoError;
use hickory_server::proto::dnssec::DnsSecError;
use hickory_server::proto::rr::rdata::tsig::{TSIG, TsigAlgorithm, TsigError, make_tsig_record};
use hickory_server::proto::rr::{Name, Record};
use hickory_server::proto::rr::{TSigResponseContext, TSigner};
use hickory_server::proto::serialize::binary::BinEncoder;

/// Allowed clock difference, as BIND uses.
pub const FUDGE_SECS: u16 = 300;

#[derive(Debug, thiserror::Error)]
pub enum TsigKeyError {
    #[error("cannot read TSIG key file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("TSIG key file {path}: {what}")]
    Format { path: PathBuf, what: String },
}

/// Signing a message of a transfer failed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("cannot sign the message")]
    Encode(#[from] ProtoError),
    #[error("cannot sign the message")]
    Mac(#[from] DnsSecError),
}

/// A TSIG key. The secret is never printed.
#[derive(Clone)]
pub struct TsigKey {
    pub name: Name,
    pub algorithm: TsigAlgorithm,
    secret: Vec<u8>,
}

impl std::fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TsigKey")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl TsigKey {
    pub fn load(path: &Path) -> Result<TsigKey, TsigKeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| TsigKeyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        TsigKey::parse(&text).map_err(|what| TsigKeyError::Format {
            path: path.to_path_buf(),
            what,
        })
    }

    /// Parse BIND's `key "name" { algorithm hmac-sha256; secret "…"; };`.
    /// Error texts never contain the secret.
    pub fn parse(text: &str) -> Result<TsigKey, String> {
        let tokens = tokenize(text);
        let mut it = tokens.iter().map(String::as_str);
        if it.next() != Some("key") {
            return Err("expected `key \"name\" { algorithm …; secret \"…\"; };`".into());
        }
        let name = it.next().ok_or("missing key name")?;
        if it.next() != Some("{") {
            return Err("expected `{` after the key name".into());
        }
        let (mut algorithm, mut secret) = (None, None);
        loop {
            match it.next() {
                Some("algorithm") => algorithm = it.next().map(str::to_ascii_lowercase),
                Some("secret") => secret = it.next(),
                Some("}") => break,
                Some(other) => return Err(format!("unexpected `{other}` in the key statement")),
                None => return Err("missing `}`".into()),
            }
            if it.next() != Some(";") {
                return Err("expected `;` after a value".into());
            }
        }
        let algorithm = match algorithm.as_deref() {
            Some("hmac-sha256") => TsigAlgorithm::HmacSha256,
            Some("hmac-sha384") => TsigAlgorithm::HmacSha384,
            Some("hmac-sha512") => TsigAlgorithm::HmacSha512,
            Some(other) => {
                return Err(format!(
                    "algorithm {other} is not supported (hmac-sha256, hmac-sha384 or hmac-sha512)"
                ));
            }
            None => return Err("missing `algorithm`".into()),
        };
        let secret = secret.ok_or("missing `secret`")?;
        let secret = data_encoding::BASE64
            .decode(secret.as_bytes())
            .map_err(|_| "the secret is not valid base64".to_string())?;
        if secret.is_empty() {
            return Err("the secret is empty".into());
        }
        let mut name =
            Name::from_ascii(name).map_err(|_| format!("{name:?} is not a valid key name"))?;
        name.set_fqdn(true);
        Ok(TsigKey {
            name: name.to_lowercase(),
            algorithm,
            secret,
        })
    }

    pub fn signer(&self) -> Result<TSigner, DnsSecError> {
        TSigner::new(
            self.secret.clone(),
            self.algorithm.clone(),
            self.name.clone(),
            FUDGE_SECS,
        )
    }
}

/// Words, quoted strings and the punctuation `{ } ;`; comments (`#`, `//`,
/// `/* */`) dropped.
fn tokenize(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'#' || (c == b'/' && b.get(i + 1) == Some(&b'/')) {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                i += 1;
            }
            i += 2;
        } else if c == b'"' {
            let start = i + 1;
            i = start;
            while i < b.len() && b[i] != b'"' {
                i += 1;
            }
            out.push(String::from_utf8_lossy(&b[start..i.min(b.len())]).into_owned());
            i += 1;
        } else if matches!(c, b'{' | b'}' | b';') {
            out.push((c as char).to_string());
            i += 1;
        } else {
            let start = i;
            while i < b.len()
                && !b[i].is_ascii_whitespace()
                && !matches!(b[i], b'{' | b'}' | b';' | b'"')
            {
                i += 1;
            }
            out.push(String::from_utf8_lossy(&b[start..i]).into_owned());
        }
    }
    out
}

/// How a request's TSIG checks out.
pub enum RequestAuth {
    /// No TSIG on the request.
    Unsigned,
    /// Signed with our key: answer signed, chained from this MAC.
    Signed { mac: Vec<u8> },
    /// Signed, but wrongly: answer NOTAUTH with this unsigned (or for
    /// BADTIME signed) TSIG record.
    Bad(Box<Record<TSIG>>),
}

/// Check a request's TSIG (`raw` is the request as received).
pub fn check_request(
    key: Option<&TSigner>,
    signature: Option<&Record<TSIG>>,
    raw: &[u8],
    id: u16,
    now: u64,
) -> RequestAuth {
    let Some(sig) = signature else {
        return RequestAuth::Unsigned;
    };
    let bad = |ctx: TSigResponseContext| match ctx.sign(&[]) {
        Ok(r) => RequestAuth::Bad(r),
        // Building an unsigned error record does not fail; if it did, an
        // empty NOTAUTH is still the right refusal.
        Err(_) => RequestAuth::Bad(Box::new(make_tsig_record(
            sig.name.clone(),
            TSIG::new(
                TsigAlgorithm::HmacSha256,
                now,
                FUDGE_SECS,
                Vec::new(),
                id,
                Some(TsigError::BadKey),
                Vec::new(),
            ),
        ))),
    };
    let Some(signer) = key else {
        return bad(TSigResponseContext::unknown_key(id, now, sig.name.clone()));
    };
    if sig.name.to_lowercase() != *signer.signer_name() || sig.data.algorithm != *signer.algorithm()
    {
        return bad(TSigResponseContext::unknown_key(id, now, sig.name.clone()));
    }
    match signer.verify_message_byte(raw, None, true) {
        Ok((mac, _, range)) => {
            if range.contains(&now) || range.end == now {
                RequestAuth::Signed { mac }
            } else {
                // BADTIME answers are signed (RFC 8945 §5.2.3).
                let ctx = TSigResponseContext::new(
                    id,
                    now,
                    signer.clone(),
                    mac,
                    Some(TsigError::BadTime),
                );
                match ctx.sign(raw) {
                    Ok(r) => RequestAuth::Bad(r),
                    Err(_) => bad(TSigResponseContext::bad_signature(id, now, signer.clone())),
                }
            }
        }
        Err(_) => bad(TSigResponseContext::bad_signature(id, now, signer.clone())),
    }
}

/// Signs the messages of one answer in turn, each over the previous MAC.
pub struct ChainSigner {
    signer: TSigner,
    original_id: u16,
    time: u64,
    prior_mac: Vec<u8>,
    first: bool,
}

impl ChainSigner {
    /// `request_mac` is the MAC of the signed request.
    pub fn new(signer: TSigner, original_id: u16, request_mac: Vec<u8>, time: u64) -> Self {
        ChainSigner {
            signer,
            original_id,
            time,
            prior_mac: request_mac,
            first: true,
        }
    }

    /// The TSIG record for the next message, given its encoding without
    /// the TSIG record (ARCOUNT not counting it).
    pub fn sign(&mut self, message: &[u8]) -> Result<Box<Record<TSIG>>, SignError> {
        let record = if self.first {
            let ctx = TSigResponseContext::new(
                self.original_id,
                self.time,
                self.signer.clone(),
                std::mem::take(&mut self.prior_mac),
                None,
            );
            ctx.sign(message)?
        } else {
            // RFC 8945 §5.3.1: prior MAC, message, then only the timers.
            let mut tbs = Vec::with_capacity(message.len() + self.prior_mac.len() + 10);
            let mut enc = BinEncoder::new(&mut tbs);
            let emit = |enc: &mut BinEncoder<'_>| -> Result<(), hickory_server::proto::ProtoError> {
                enc.emit_u16(self.prior_mac.len() as u16)?;
                enc.emit_vec(&self.prior_mac)?;
                enc.emit_vec(message)?;
                enc.emit_u16((self.time >> 32) as u16)?;
                enc.emit_u32(self.time as u32)?;
                enc.emit_u16(self.signer.fudge())?;
                Ok(())
            };
            emit(&mut enc)?;
            let mac = self.signer.sign(&tbs)?;
            Box::new(make_tsig_record(
                self.signer.signer_name().clone(),
                TSIG::new(
                    self.signer.algorithm().clone(),
                    self.time,
                    self.signer.fudge(),
                    mac,
                    self.original_id,
                    None,
                    Vec::new(),
                ),
            ))
        };
        self.first = false;
        self.prior_mac = record.data.mac.clone();
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_key_files_parse() {
        let k = TsigKey::parse(
            "# made by tsig-keygen\nkey \"zdn-xfr\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0c2VjcmV0\";\n};\n",
        )
        .expect("valid");
        assert_eq!(k.name.to_ascii(), "zdn-xfr.");
        assert_eq!(k.algorithm, TsigAlgorithm::HmacSha256);
        assert_eq!(k.secret, b"secretsecret");
        assert!(!format!("{k:?}").contains("c2Vj"));
    }

    #[test]
    fn bad_key_files_say_why_without_the_secret() {
        let e =
            TsigKey::parse("key x { algorithm hmac-md5; secret \"c2VjcmV0\"; };").expect_err("md5");
        assert!(e.contains("hmac-md5"), "{e}");
        let e = TsigKey::parse("key x { algorithm hmac-sha256; secret \"!!notbase64\"; };")
            .expect_err("base64");
        assert!(!e.contains("notbase64"), "{e}");
        assert!(TsigKey::parse("key x { algorithm hmac-sha256; };").is_err());
        assert!(TsigKey::parse("").is_err());
    }
}
