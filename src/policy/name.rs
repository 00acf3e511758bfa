//! Name normalisation: one canonical form for every domain name that enters
//! the policy, whatever shape the feed wrote it in.
//!
//! Feeds are written by people and by many tools: upper case, trailing dots,
//! Unicode (IDN), defanged notation (`evil[.]com`, `hxxp://`), wildcards
//! (`*.evil.com`) and plain garbage. Everything is brought to lower-case
//! A-label (punycode) form without the trailing dot, or rejected with a
//! reason that `stats` and `check` can show.

use std::fmt;

/// Longest name in presentation form without the trailing dot (RFC 1035:
/// 255 octets on the wire, which is 253 characters of text).
pub const MAX_NAME_LEN: usize = 253;
/// Longest label (RFC 1035).
pub const MAX_LABEL_LEN: usize = 63;

/// Why a name was rejected. The variants are stable: `stats` counts them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("empty name")]
    Empty,
    #[error("empty label")]
    EmptyLabel,
    #[error("label of {len} octets (at most 63)")]
    LabelTooLong { len: usize },
    #[error("name of {len} octets (at most 253)")]
    NameTooLong { len: usize },
    #[error("byte {byte:#04x} not allowed in a name")]
    InvalidByte { byte: u8 },
    #[error("invalid internationalised name")]
    Idna,
    #[error("wildcard not at the start")]
    Wildcard,
}

impl NameError {
    /// Short stable key for counters and reports.
    pub fn reason(&self) -> &'static str {
        match self {
            NameError::Empty => "empty",
            NameError::EmptyLabel => "empty-label",
            NameError::LabelTooLong { .. } => "label-too-long",
            NameError::NameTooLong { .. } => "name-too-long",
            NameError::InvalidByte { .. } => "invalid-byte",
            NameError::Idna => "idna",
            NameError::Wildcard => "wildcard",
        }
    }
}

/// A normalised name: lower case, A-labels, no trailing dot, valid.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NormalName(String);

impl NormalName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn into_string(self) -> String {
        self.0
    }
    /// True when the name is a public suffix (`com`, `co.uk`, `github.io`…)
    /// or a single label: blocking one would take out a whole registry.
    pub fn is_public_suffix(&self) -> bool {
        if !self.0.contains('.') {
            return true;
        }
        match psl::suffix(self.0.as_bytes()) {
            Some(s) => s.is_known() && s.as_bytes() == self.0.as_bytes(),
            None => false,
        }
    }
    /// The name with its byte order reversed: the key in the fst, so that a
    /// parent domain is a prefix of its children at a label boundary.
    pub fn reversed_key(&self) -> Vec<u8> {
        self.0.bytes().rev().collect()
    }
    /// Build from a key produced by [`NormalName::reversed_key`].
    pub fn from_reversed_key(key: &[u8]) -> Option<NormalName> {
        let bytes: Vec<u8> = key.iter().rev().copied().collect();
        String::from_utf8(bytes).ok().map(NormalName)
    }
}

impl fmt::Display for NormalName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A name as a feed wrote it, after normalisation: the name and whether it
/// was written as a wildcard (`*.name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedName {
    pub name: NormalName,
    pub wildcard: bool,
}

/// Undo the common ways analysts "defang" indicators so they are not clickable.
/// Returns the input unchanged (borrowed) when there is nothing to undo.
pub fn refang(raw: &str) -> std::borrow::Cow<'_, str> {
    const PATTERNS: &[(&str, &str)] = &[
        ("[.]", "."),
        ("(.)", "."),
        ("{.}", "."),
        ("[dot]", "."),
        ("(dot)", "."),
        ("[:]", ":"),
        ("[://]", "://"),
        ("hxxps://", "https://"),
        ("hxxp://", "http://"),
        ("hXXps://", "https://"),
        ("hXXp://", "http://"),
        ("fxp://", "ftp://"),
    ];
    // Every pattern holds a bracket or "://": a plain name (nearly every
    // line of a big list) is let through after one pass, with no allocation.
    let maybe = raw.bytes().any(|b| matches!(b, b'[' | b'(' | b'{')) || raw.contains("://");
    let needs = maybe && PATTERNS.iter().any(|(p, _)| contains_ignore_case(raw, p));
    if !needs {
        return std::borrow::Cow::Borrowed(raw);
    }
    let mut s = raw.to_string();
    for (p, r) in PATTERNS {
        s = replace_ignore_case(&s, p, r);
    }
    std::borrow::Cow::Owned(s)
}

fn contains_ignore_case(hay: &str, needle: &str) -> bool {
    let needle = needle.as_bytes();
    hay.as_bytes()
        .windows(needle.len().max(1))
        .any(|w| w.eq_ignore_ascii_case(needle))
}

fn replace_ignore_case(hay: &str, needle: &str, with: &str) -> String {
    let lower = hay.to_ascii_lowercase();
    let needle = needle.to_ascii_lowercase();
    let mut out = String::with_capacity(hay.len());
    let mut last = 0;
    for (i, _) in lower.match_indices(&needle) {
        out.push_str(&hay[last..i]);
        out.push_str(with);
        last = i + needle.len();
    }
    out.push_str(&hay[last..]);
    out
}

/// Normalise a domain name as written by a feed. Understands defanging, a
/// leading `*.`, a trailing dot, upper case and Unicode.
pub fn parse_name(raw: &str) -> Result<ParsedName, NameError> {
    let refanged = refang(raw.trim());
    let mut s: &str = refanged.as_ref();
    let mut wildcard = false;
    if let Some(rest) = s.strip_prefix("*.") {
        wildcard = true;
        s = rest;
    }
    if s.contains('*') {
        return Err(NameError::Wildcard);
    }
    let name = normalise(s)?;
    Ok(ParsedName { name, wildcard })
}

/// Normalise a name that may not be a wildcard.
pub fn normalise(raw: &str) -> Result<NormalName, NameError> {
    let s = raw.trim();
    let s = s.strip_suffix('.').unwrap_or(s);
    if s.is_empty() {
        return Err(NameError::Empty);
    }
    let ascii: String = if s.is_ascii() {
        s.to_ascii_lowercase()
    } else {
        // UTS 46 processing: case folding, mapping, punycode.
        idna::domain_to_ascii(s).map_err(|_| NameError::Idna)?
    };
    validate(&ascii)?;
    Ok(NormalName(ascii))
}

/// Check a lower-case ASCII name against the DNS limits and the bytes we
/// accept in a hostname (letters, digits, `-` and `_`).
fn validate(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::NameTooLong { len: name.len() });
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(NameError::EmptyLabel);
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(NameError::LabelTooLong { len: label.len() });
        }
        if let Some(&byte) = label
            .as_bytes()
            .iter()
            .find(|b| !(b.is_ascii_lowercase() || b.is_ascii_digit() || **b == b'-' || **b == b'_'))
        {
            return Err(NameError::InvalidByte { byte });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<(&str, bool), NameError>) {
        let got = parse_name(input).map(|p| (p.name.0.clone(), p.wildcard));
        let want = expected.map(|(n, w)| (n.to_string(), w));
        assert_eq!(got, want, "input {input:?}");
    }

    #[test]
    fn lower_case_and_trailing_dot() {
        check("EVIL.Example.COM.", Ok(("evil.example.com", false)));
        check("  evil.example \n", Ok(("evil.example", false)));
    }

    #[test]
    fn wildcard_prefix() {
        check("*.evil.example", Ok(("evil.example", true)));
        check("a.*.evil.example", Err(NameError::Wildcard));
        check("*evil.example", Err(NameError::Wildcard));
    }

    #[test]
    fn defanged() {
        check("evil[.]example[.]com", Ok(("evil.example.com", false)));
        check("evil(.)example", Ok(("evil.example", false)));
        check("evil[dot]example", Ok(("evil.example", false)));
        check("EVIL[.]Example", Ok(("evil.example", false)));
    }

    #[test]
    fn idn_to_a_labels() {
        check("bücher.example", Ok(("xn--bcher-kva.example", false)));
        check("BÜCHER.example.", Ok(("xn--bcher-kva.example", false)));
        check(
            "xn--bcher-kva.example",
            Ok(("xn--bcher-kva.example", false)),
        );
    }

    #[test]
    fn invalid_names() {
        check("", Err(NameError::Empty));
        check(".", Err(NameError::Empty));
        check("a..b", Err(NameError::EmptyLabel));
        check(".a.b", Err(NameError::EmptyLabel));
        let long_label = "a".repeat(64);
        check(
            &format!("{long_label}.com"),
            Err(NameError::LabelTooLong { len: 64 }),
        );
        let ok_label = "a".repeat(63);
        check(
            &format!("{ok_label}.com"),
            Ok((&format!("{ok_label}.com"), false)),
        );
        let long_name = vec!["abcdefghi"; 26].join(".");
        assert!(long_name.len() > 253);
        check(
            &long_name,
            Err(NameError::NameTooLong {
                len: long_name.len(),
            }),
        );
        check(
            "evil example.com",
            Err(NameError::InvalidByte { byte: b' ' }),
        );
        check(
            "evil/example.com",
            Err(NameError::InvalidByte { byte: b'/' }),
        );
        check("ev\u{0}il.com", Err(NameError::InvalidByte { byte: 0 }));
    }

    #[test]
    fn underscores_and_hyphens_are_names() {
        check(
            "_dmarc.evil-site.example",
            Ok(("_dmarc.evil-site.example", false)),
        );
    }

    #[test]
    fn public_suffix_guard() {
        let ps = |s: &str| normalise(s).map(|n| n.is_public_suffix());
        assert_eq!(ps("com"), Ok(true));
        assert_eq!(ps("co.uk"), Ok(true));
        assert_eq!(ps("nl"), Ok(true));
        assert_eq!(ps("github.io"), Ok(true));
        assert_eq!(ps("corp"), Ok(true), "a single label is never blocked");
        assert_eq!(ps("evil.com"), Ok(false));
        assert_eq!(ps("evil.co.uk"), Ok(false));
        assert_eq!(ps("zorg.nl"), Ok(false));
    }

    #[test]
    fn reversed_key_round_trips() {
        let n = normalise("www.evil.com").expect("valid");
        assert_eq!(n.reversed_key(), b"moc.live.www");
        assert_eq!(NormalName::from_reversed_key(b"moc.live.www"), Some(n));
    }
}
