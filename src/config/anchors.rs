//! `resolver.trust_anchor_file`: DNSKEY records in zone-file syntax, as
//! Unbound's `trust-anchor-file` (e.g. dnssec-keygen's `K*.key`). Read by
//! the recursor and the forwarder at start, and by `check-config`.

use std::path::Path;

use hickory_proto::dnssec::TrustAnchors;
use hickory_proto::rr::LowerName;

/// Why a trust anchor file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TrustAnchorError {
    #[error("cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}: DS trust anchors are not supported (hickory 0.26 anchors on keys): give the zone's key-signing DNSKEY record instead (dig DNSKEY <zone>, or the K*.key file of dnssec-keygen)"
    )]
    Ds { path: String },
    #[error("{path}: not a file of DNSKEY records: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: holds no DNSKEY record")]
    Empty { path: String },
}

/// The trust anchors of `resolver.trust_anchor_file`: DNSKEY records in
/// zone-file syntax. Without a key for the root in the file, the built-in
/// root keys stay (hickory validates every chain from the root).
pub fn read_trust_anchors(path: &Path) -> Result<TrustAnchors, TrustAnchorError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| TrustAnchorError::Read {
        path: shown.clone(),
        source,
    })?;
    parse_trust_anchors(&text).map_err(|e| match e {
        AnchorText::Ds => TrustAnchorError::Ds { path: shown },
        AnchorText::Empty => TrustAnchorError::Empty { path: shown },
        AnchorText::Parse(message) => TrustAnchorError::Parse {
            path: shown,
            message,
        },
    })
}

/// Why the text of a trust anchor file is not usable.
#[derive(Debug, PartialEq, Eq)]
pub enum AnchorText {
    Ds,
    Empty,
    Parse(String),
}

/// [`read_trust_anchors`] on the text.
pub fn parse_trust_anchors(text: &str) -> Result<TrustAnchors, AnchorText> {
    let has_ds = text.lines().any(|l| {
        let l = l.split(';').next().unwrap_or("");
        l.split_whitespace().any(|w| w.eq_ignore_ascii_case("DS"))
    });
    if has_ds {
        return Err(AnchorText::Ds);
    }
    use hickory_proto::serialize::txt::trust_anchor::{Entry, Parser};
    let keys = Parser::new(text)
        .parse()
        .map_err(|e| AnchorText::Parse(e.to_string()))?;
    if keys.is_empty() {
        return Err(AnchorText::Empty);
    }
    // Entry is non-exhaustive: DNSKEY is all hickory 0.26 reads.
    let keys: Vec<_> = keys
        .into_iter()
        .filter_map(|e| match e {
            Entry::DNSKEY(r) => Some(r),
            _ => None,
        })
        .collect();
    if keys.is_empty() {
        return Err(AnchorText::Empty);
    }
    let has_root = keys.iter().any(|r| r.name().is_root());
    let mut anchors = if has_root {
        TrustAnchors::empty()
    } else {
        TrustAnchors::default()
    };
    for record in keys {
        anchors.insert_with_name(record.data().public_key(), LowerName::from(record.name()));
    }
    Ok(anchors)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CORP_KEY: &str = "; a comment, as dnssec-keygen writes\ncorp.example. IN DNSKEY 257 3 13 aCxb+U4b3Hp41g3I23m6plJdh+L0k25uX6gP4yJNRcHSEJYch4JXBPb2 r22j/tvB1uJE2191auotOtNKmdLdsg==\n";
    const ROOT_KEY: &str = ". 3600 IN DNSKEY 257 3 13 CdCuJv8hl8AHel9y3/TgTRHwTnlF8B0ljDxynaxehF6ZIibIdWwXA/Eg p6pVi2POD4AkEiUaADgVq4h1Fd27kg==\n";

    #[test]
    fn a_root_key_replaces_the_built_in_ones() {
        let a = parse_trust_anchors(ROOT_KEY).expect("root key");
        assert_eq!(a.len(), 1);
        let both = parse_trust_anchors(&format!("{ROOT_KEY}{CORP_KEY}")).expect("both");
        assert_eq!(both.len(), 1);
    }

    #[test]
    fn a_key_below_the_root_keeps_the_built_in_root_keys() {
        let a = parse_trust_anchors(CORP_KEY).expect("corp key");
        assert_eq!(a.len(), TrustAnchors::default().len());
        assert!(a.len() >= 2);
    }

    #[test]
    fn ds_garbage_and_empty_files_are_refused() {
        let ds = "corp.example. IN DS 12345 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF\n";
        assert_eq!(parse_trust_anchors(ds).err(), Some(AnchorText::Ds));
        assert_eq!(
            parse_trust_anchors("; nothing\n").err(),
            Some(AnchorText::Empty)
        );
        assert!(matches!(
            parse_trust_anchors("corp.example. IN DNSKEY 257 3 13 !!!\n"),
            Err(AnchorText::Parse(_))
        ));
        assert!(matches!(
            parse_trust_anchors("corp.example. IN A 192.0.2.1\n"),
            Err(AnchorText::Parse(_) | AnchorText::Empty)
        ));
    }
}
