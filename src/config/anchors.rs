//! `resolver.trust_anchor_file`: DS and DNSKEY records in zone-file
//! syntax, as Unbound's `trust-anchor-file` (dnssec-keygen's `K*.key`,
//! dnssec-dsfromkey's output, a `dsset-` file, or a mix). Read by
//! `check-config` and, when the resolver is built, by `server::anchors`,
//! which turns each DS anchor into the zone's keys ([`keys_from_ds`]).
//!
//! hickory 0.26 anchors on public keys only (`TrustAnchors`), so a DS
//! anchor becomes keys the way Unbound makes it one (validator/val_kentry.c
//! and val_utils.c, `verify_dnskeys_with_ds_rr`): the zone's DNSKEY RRset
//! is fetched, a key becomes an anchor only if a DS of the file matches it
//! (owner, algorithm, key tag, and the digest of RFC 4034 5.1.4 with digest
//! type 1, 2 or 4 of RFC 3658/4509/6605), it is a zone key (RFC 4034 2.1.1,
//! 5.2) and not revoked, and the DNSKEY RRset carries a valid signature made
//! by that key (it is self-signed, RFC 4035 5.2).

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use hickory_proto::dnssec::rdata::{DNSKEY, DNSSECRData, DS};
use hickory_proto::dnssec::{PublicKey, TrustAnchors, Verifier};
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};

/// Why a trust anchor file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TrustAnchorError {
    #[error("cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a file of DS or DNSKEY records: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: holds no DS or DNSKEY record")]
    Empty { path: String },
    #[error("{path}: the DS anchors were not turned into keys")]
    Unresolved { path: String },
}

/// Why the text of a trust anchor file is not usable.
#[derive(Debug, PartialEq, Eq)]
pub enum AnchorText {
    Empty,
    Parse(String),
}

/// The records of a trust anchor file.
#[derive(Debug, Clone, Default)]
pub struct AnchorFile {
    /// DNSKEY anchors: trusted as given.
    pub keys: Vec<(Name, DNSKEY)>,
    /// DS anchors: trusted once matched to the zone's keys.
    pub ds: Vec<(Name, DS)>,
}

impl AnchorFile {
    /// The zones with DS anchors, each once, in the order of the file.
    pub fn ds_zones(&self) -> Vec<Name> {
        let mut zones: Vec<Name> = Vec::new();
        for (n, _) in &self.ds {
            if !zones.contains(n) {
                zones.push(n.clone());
            }
        }
        zones
    }

    /// The DS anchors of `zone`.
    pub fn ds_of(&self, zone: &Name) -> Vec<DS> {
        self.ds
            .iter()
            .filter(|(n, _)| n == zone)
            .map(|(_, d)| d.clone())
            .collect()
    }
}

/// Read and parse `resolver.trust_anchor_file`.
pub fn read_anchor_file(path: &Path) -> Result<AnchorFile, TrustAnchorError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| TrustAnchorError::Read {
        path: shown.clone(),
        source,
    })?;
    parse_anchor_file(&text).map_err(|e| match e {
        AnchorText::Empty => TrustAnchorError::Empty { path: shown },
        AnchorText::Parse(message) => TrustAnchorError::Parse {
            path: shown,
            message,
        },
    })
}

/// [`read_anchor_file`] on the text: zone-file syntax (relative names are
/// below the root; a record without a TTL is given one, as anchors have
/// none that matters). hickory's zone-file parser refuses DNSKEY records
/// and its trust-anchor parser reads nothing else, so the file is cut into
/// its records ([`split_records`]) and each goes to the parser for it.
pub fn parse_anchor_file(text: &str) -> Result<AnchorFile, AnchorText> {
    use hickory_proto::serialize::txt::trust_anchor::{Entry, Parser as KeyParser};
    let (key_text, other_text) = split_records(text);
    let mut file = AnchorFile::default();
    let entries = KeyParser::new(key_text)
        .parse()
        .map_err(|e| AnchorText::Parse(e.to_string()))?;
    // Entry is non-exhaustive: DNSKEY is all hickory 0.26 reads there.
    for e in entries {
        let Entry::DNSKEY(r) = e else {
            continue;
        };
        file.keys.push((r.name().clone(), r.data().clone()));
    }
    let other_text = format!("$TTL 3600\n{other_text}");
    let parser = hickory_proto::serialize::txt::Parser::new(other_text, None, Some(Name::root()));
    let (_, sets) = parser
        .parse()
        .map_err(|e| AnchorText::Parse(e.to_string()))?;
    for set in sets.values() {
        for r in set.records(false) {
            match &r.data {
                RData::DNSSEC(DNSSECRData::DS(d)) => file.ds.push((r.name.clone(), d.clone())),
                _ => {
                    return Err(AnchorText::Parse(format!(
                        "{} {}: only DS and DNSKEY records are trust anchors",
                        r.name,
                        r.record_type()
                    )));
                }
            }
        }
    }
    if file.keys.is_empty() && file.ds.is_empty() {
        return Err(AnchorText::Empty);
    }
    Ok(file)
}

/// The DNSKEY records of a zone file, and everything else (directives,
/// other records), each record on one line: comments dropped, a record in
/// parentheses joined, and a record without an owner given the last one.
pub fn split_records(text: &str) -> (String, String) {
    let (mut keys, mut other) = (String::new(), String::new());
    let mut owner: Option<String> = None;
    let mut record = String::new();
    let mut depth = 0i64;
    let mut flush = |record: &mut String, owner: &mut Option<String>| {
        let joined = record.replace(['(', ')'], " ");
        record.clear();
        if joined.trim().is_empty() {
            return;
        }
        let trimmed = joined.trim();
        let line = if trimmed.starts_with('$') {
            other.push_str(trimmed);
            other.push('\n');
            return;
        } else if joined.starts_with(char::is_whitespace) {
            match owner {
                Some(o) => format!("{o} {trimmed}"),
                None => trimmed.to_string(),
            }
        } else {
            *owner = trimmed.split_whitespace().next().map(str::to_string);
            trimmed.to_string()
        };
        let is_key = line
            .split_whitespace()
            .any(|w| w.eq_ignore_ascii_case("DNSKEY"));
        let to = if is_key { &mut keys } else { &mut other };
        to.push_str(&line);
        to.push('\n');
    };
    for line in text.lines() {
        let l = line.split(';').next().unwrap_or("");
        depth += l.matches('(').count() as i64 - l.matches(')').count() as i64;
        record.push_str(l);
        record.push(' ');
        if depth <= 0 {
            depth = 0;
            flush(&mut record, &mut owner);
        }
    }
    flush(&mut record, &mut owner);
    (keys, other)
}

/// hickory's trust anchors for `keys`. Without a key for the root, the
/// built-in root keys stay (hickory validates every chain from the root).
pub fn trust_anchors(keys: &[(Name, DNSKEY)]) -> TrustAnchors {
    let mut anchors = if keys.iter().any(|(n, _)| n.is_root()) {
        TrustAnchors::empty()
    } else {
        TrustAnchors::default()
    };
    for (name, key) in keys {
        anchors.insert_with_name(key.public_key(), LowerName::from(name));
    }
    anchors
}

/// The trust anchors of `resolver.trust_anchor_file` with its DS anchors
/// turned into keys (`server::anchors`), for the validators.
#[derive(Clone)]
pub struct ResolvedAnchors {
    pub anchors: Arc<TrustAnchors>,
    /// The anchored keys, "zone/key tag", for `Debug` (configurations are
    /// compared through it on reload).
    shown: Vec<String>,
}

impl ResolvedAnchors {
    /// `keys`: the file's DNSKEYs and the keys its DS records matched.
    pub fn new(keys: &[(Name, DNSKEY)]) -> ResolvedAnchors {
        let shown = keys
            .iter()
            .map(|(n, k)| {
                let tag = k.calculate_key_tag().map_or(-1, i32::from);
                format!("{n}/{tag}")
            })
            .collect();
        ResolvedAnchors {
            anchors: Arc::new(trust_anchors(keys)),
            shown,
        }
    }
}

impl fmt::Debug for ResolvedAnchors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ResolvedAnchors").field(&self.shown).finish()
    }
}

/// The anchors a validator is built with: `resolved` if there, else the
/// file's DNSKEY records (a file with DS records must have been resolved:
/// their keys need a fetch). `None`: the built-in root keys.
pub fn configured(
    path: Option<&Path>,
    resolved: Option<&ResolvedAnchors>,
) -> Result<Option<Arc<TrustAnchors>>, TrustAnchorError> {
    if let Some(r) = resolved {
        return Ok(Some(r.anchors.clone()));
    }
    let Some(path) = path else {
        return Ok(None);
    };
    let file = read_anchor_file(path)?;
    if !file.ds.is_empty() {
        return Err(TrustAnchorError::Unresolved {
            path: path.display().to_string(),
        });
    }
    Ok(Some(Arc::new(trust_anchors(&file.keys))))
}

/// Why a DS anchor gave no key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DsMismatch {
    #[error("the zone has no DNSKEY record")]
    NoKeys,
    #[error(
        "no zone key of the DNSKEY RRset matches a DS anchor (key tags {tags}; DS key tags {ds_tags})"
    )]
    NoMatch { tags: String, ds_tags: String },
    #[error(
        "the DNSKEY RRset is not validly signed by a key a DS anchor matches (key tags {tags})"
    )]
    NotSelfSigned { tags: String },
}

/// The keys of `zone`'s DNSKEY RRset (`records`: the answer, with its
/// RRSIGs) that its DS anchors `ds` make trust anchors (see the module
/// docs). `now`: seconds since the epoch, for the signatures' validity
/// (RFC 4034 3.1.5 serial arithmetic).
pub fn keys_from_ds(
    zone: &Name,
    ds: &[DS],
    records: &[Record],
    now: u64,
) -> Result<Vec<DNSKEY>, DsMismatch> {
    let keyset: Vec<&Record> = records
        .iter()
        .filter(|r| r.name == *zone && r.record_type() == RecordType::DNSKEY)
        .collect();
    let keys: Vec<&DNSKEY> = keyset
        .iter()
        .filter_map(|r| match &r.data {
            RData::DNSSEC(DNSSECRData::DNSKEY(k)) => Some(k),
            _ => None,
        })
        .collect();
    if keys.is_empty() {
        return Err(DsMismatch::NoKeys);
    }
    let matched: Vec<&DNSKEY> = keys
        .iter()
        .copied()
        .filter(|k| k.zone_key() && !k.revoke())
        .filter(|k| {
            ds.iter().any(|d| {
                d.digest_type().is_supported()
                    && d.algorithm() == k.public_key().algorithm()
                    && Some(d.key_tag()) == key_tag(k)
                    && d.covers(zone, k).unwrap_or(false)
            })
        })
        .collect();
    if matched.is_empty() {
        return Err(DsMismatch::NoMatch {
            tags: tags(&keys),
            ds_tags: ds
                .iter()
                .map(|d| d.key_tag().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let now32 = now as u32;
    let reached = |t: u32| (now32.wrapping_sub(t) as i32) >= 0;
    let sigs: Vec<_> = records
        .iter()
        .filter(|r| r.name == *zone)
        .filter_map(|r| match &r.data {
            RData::DNSSEC(DNSSECRData::RRSIG(s))
                if s.input().type_covered == RecordType::DNSKEY =>
            {
                Some(s)
            }
            _ => None,
        })
        .collect();
    let signed: Vec<DNSKEY> = matched
        .iter()
        .filter(|k| {
            sigs.iter().any(|s| {
                let i = s.input();
                Some(i.key_tag) == key_tag(k)
                    && i.algorithm == k.public_key().algorithm()
                    && i.signer_name == *zone
                    && reached(i.sig_inception.get())
                    && !reached(i.sig_expiration.get().wrapping_add(1))
                    && k.verify_rrsig(zone, DNSClass::IN, s, keyset.iter().copied())
                        .is_ok()
            })
        })
        .map(|k| (*k).clone())
        .collect();
    if signed.is_empty() {
        return Err(DsMismatch::NotSelfSigned {
            tags: tags(&matched),
        });
    }
    Ok(signed)
}

fn key_tag(k: &DNSKEY) -> Option<u16> {
    k.calculate_key_tag().ok()
}

/// The key tags of `keys`, for an error.
fn tags(keys: &[&DNSKEY]) -> String {
    keys.iter()
        .map(|k| key_tag(k).map_or("?".to_string(), |t| t.to_string()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const CORP_KEY: &str = "; a comment, as dnssec-keygen writes\ncorp.example. IN DNSKEY 257 3 13 aCxb+U4b3Hp41g3I23m6plJdh+L0k25uX6gP4yJNRcHSEJYch4JXBPb2 r22j/tvB1uJE2191auotOtNKmdLdsg==\n";
    const ROOT_KEY: &str = ". 3600 IN DNSKEY 257 3 13 CdCuJv8hl8AHel9y3/TgTRHwTnlF8B0ljDxynaxehF6ZIibIdWwXA/Eg p6pVi2POD4AkEiUaADgVq4h1Fd27kg==\n";

    fn anchors(text: &str) -> TrustAnchors {
        trust_anchors(&parse_anchor_file(text).expect("anchors").keys)
    }

    #[test]
    fn a_root_key_replaces_the_built_in_ones() {
        assert_eq!(anchors(ROOT_KEY).len(), 1);
        assert_eq!(anchors(&format!("{ROOT_KEY}{CORP_KEY}")).len(), 1);
    }

    #[test]
    fn a_key_below_the_root_keeps_the_built_in_root_keys() {
        let a = anchors(CORP_KEY);
        assert_eq!(a.len(), TrustAnchors::default().len());
        assert!(a.len() >= 2);
    }

    #[test]
    fn ds_and_dnskey_records_mix_and_garbage_is_refused() {
        let ds = "corp.example. IN DS 12345 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF\n";
        let f = parse_anchor_file(&format!("{ds}{ROOT_KEY}")).expect("mixed");
        assert_eq!((f.keys.len(), f.ds.len()), (1, 1));
        assert_eq!(
            f.ds_zones(),
            vec![Name::from_ascii("corp.example.").expect("name")]
        );
        assert_eq!(
            parse_anchor_file("; nothing\n").err(),
            Some(AnchorText::Empty)
        );
        assert!(matches!(
            parse_anchor_file("corp.example. IN DNSKEY 257 3 13 !!!\n"),
            Err(AnchorText::Parse(_))
        ));
        assert!(matches!(
            parse_anchor_file("corp.example. IN A 192.0.2.1\n"),
            Err(AnchorText::Parse(_))
        ));
    }

    /// A zone's signed DNSKEY RRset, made here: a KSK and a ZSK, the
    /// RRset signed by the KSK (valid 2020-2030), and the KSK's DS.
    fn signed_keyset(zone: &Name) -> (Vec<Record>, DNSKEY, DNSKEY) {
        use hickory_proto::dnssec::crypto::EcdsaSigningKey;
        use hickory_proto::dnssec::rdata::{RRSIG, SigInput};
        use hickory_proto::dnssec::{Algorithm, SigningKey, TBS};
        use hickory_proto::rr::SerialNumber;
        let alg = Algorithm::ECDSAP256SHA256;
        let make = || {
            let pkcs8 = EcdsaSigningKey::generate_pkcs8(alg).expect("pkcs8");
            EcdsaSigningKey::from_pkcs8(&pkcs8, alg).expect("key")
        };
        let (ksk, zsk) = (make(), make());
        let ksk_key = DNSKEY::with_flags(257, ksk.to_public_key().expect("public"));
        let zsk_key = DNSKEY::with_flags(256, zsk.to_public_key().expect("public"));
        let rec = |k: &DNSKEY| {
            Record::from_rdata(
                zone.clone(),
                3600,
                RData::DNSSEC(DNSSECRData::DNSKEY(k.clone())),
            )
        };
        let keyset = vec![rec(&ksk_key), rec(&zsk_key)];
        let input = SigInput {
            type_covered: RecordType::DNSKEY,
            algorithm: alg,
            num_labels: zone.num_labels(),
            original_ttl: 3600,
            sig_expiration: SerialNumber::new(1_893_456_000),
            sig_inception: SerialNumber::new(1_577_836_800),
            key_tag: ksk_key.calculate_key_tag().expect("tag"),
            signer_name: zone.clone(),
        };
        let tbs = TBS::from_input(zone, DNSClass::IN, &input, keyset.iter()).expect("tbs");
        let sig = ksk.sign(&tbs).expect("sign");
        let mut records = keyset;
        records.push(Record::from_rdata(
            zone.clone(),
            3600,
            RData::DNSSEC(DNSSECRData::RRSIG(RRSIG::from_sig(input, sig))),
        ));
        (records, ksk_key, zsk_key)
    }

    fn ds(zone: &Name, k: &DNSKEY, t: hickory_proto::dnssec::DigestType) -> DS {
        DS::new(
            k.calculate_key_tag().expect("tag"),
            k.public_key().algorithm(),
            t,
            k.to_digest(zone, t).expect("digest").as_ref().to_vec(),
        )
    }

    /// 2026-12-01.
    const NOW: u64 = 1_796_083_200;

    #[test]
    fn a_ds_anchor_makes_its_self_signed_zone_key_the_anchor() {
        use hickory_proto::dnssec::DigestType;
        let zone = Name::from_ascii("Corp.Example.").expect("name");
        let (records, ksk, zsk) = signed_keyset(&zone);
        for t in [DigestType::SHA1, DigestType::SHA256, DigestType::SHA384] {
            let lower = Name::from_ascii("corp.example.").expect("name");
            let got = keys_from_ds(&zone, &[ds(&lower, &ksk, t)], &records, NOW).expect("match");
            assert_eq!(got, vec![ksk.clone()], "{t:?}");
        }
        // The ZSK's DS matches, but the RRset is not signed by the ZSK.
        let by_zsk = keys_from_ds(&zone, &[ds(&zone, &zsk, DigestType::SHA256)], &records, NOW);
        assert!(
            matches!(by_zsk, Err(DsMismatch::NotSelfSigned { .. })),
            "{by_zsk:?}"
        );
        // A DS of another key, or of the right key with a wrong digest.
        let (_, other, _) = signed_keyset(&zone);
        let no = keys_from_ds(
            &zone,
            &[ds(&zone, &other, DigestType::SHA256)],
            &records,
            NOW,
        );
        assert!(matches!(no, Err(DsMismatch::NoMatch { .. })), "{no:?}");
        let good = ds(&zone, &ksk, DigestType::SHA256);
        let mut digest = good.digest().to_vec();
        digest[0] ^= 1;
        let bad = DS::new(good.key_tag(), good.algorithm(), good.digest_type(), digest);
        assert!(matches!(
            keys_from_ds(&zone, &[bad], &records, NOW),
            Err(DsMismatch::NoMatch { .. })
        ));
        // Outside the signature's validity, or without keys.
        let late = 1_893_456_000 + 10;
        assert!(matches!(
            keys_from_ds(&zone, std::slice::from_ref(&good), &records, late),
            Err(DsMismatch::NotSelfSigned { .. })
        ));
        assert_eq!(
            keys_from_ds(&zone, &[good], &[], NOW),
            Err(DsMismatch::NoKeys)
        );
    }

    #[test]
    fn a_tampered_keyset_is_not_self_signed() {
        use hickory_proto::dnssec::DigestType;
        let zone = Name::from_ascii("corp.example.").expect("name");
        let (mut records, ksk, _) = signed_keyset(&zone);
        let (_, extra, _) = signed_keyset(&zone);
        records.push(Record::from_rdata(
            zone.clone(),
            3600,
            RData::DNSSEC(DNSSECRData::DNSKEY(extra)),
        ));
        let got = keys_from_ds(&zone, &[ds(&zone, &ksk, DigestType::SHA256)], &records, NOW);
        assert!(
            matches!(got, Err(DsMismatch::NotSelfSigned { .. })),
            "{got:?}"
        );
    }

    #[test]
    fn records_in_parentheses_and_without_an_owner_are_read() {
        let text = "$ORIGIN example.\ncorp 3600 IN DNSKEY 257 3 13 ( aCxb+U4b3Hp41g3I23m6plJdh+L0k25uX6gP4yJNRcHSEJYch4JXBPb2 ; key\n r22j/tvB1uJE2191auotOtNKmdLdsg== )\n IN DS 12345 13 2 ( 0123456789ABCDEF0123456789ABCDEF\n 0123456789ABCDEF0123456789ABCDEF )\n";
        let (keys, other) = split_records(text);
        assert_eq!(keys.lines().count(), 1, "{keys}");
        assert!(other.contains("$ORIGIN example."), "{other}");
        assert!(other.contains("corp IN DS 12345"), "{other}");
    }

    #[test]
    fn resolved_anchors_show_their_keys() {
        let f = parse_anchor_file(ROOT_KEY).expect("root key");
        let r = ResolvedAnchors::new(&f.keys);
        assert_eq!(r.anchors.len(), 1);
        assert!(format!("{r:?}").contains("./"), "{r:?}");
    }
}
