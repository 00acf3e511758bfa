//! The vocabulary of the policy: what an indicator is, where it came from,
//! and what to do when a lookup hits it.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What schild answers for a name that a feed blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// NXDOMAIN with an SOA, so clients cache the negative answer.
    #[default]
    Nxdomain,
    /// NOERROR with no records and an SOA.
    Nodata,
    /// REFUSED.
    Refused,
    /// No answer at all.
    Drop,
    /// Configured A/AAAA addresses; NODATA for other types.
    Sinkhole,
    /// Answer normally, record the hit: for trialling a feed.
    LogOnly,
    /// TC=1 over UDP, so the client retries over TCP; answered normally
    /// over TCP (RPZ's `rpz-tcp-only.`).
    TcpOnly,
    /// The records the RPZ zone gives for the trigger (its local data,
    /// [`Provenance::local`]); only an `rpz` feed's records carry it.
    LocalData,
    /// A newly listed name many clients use (`guard.on_popular =
    /// "quarantine"`): answered normally and recorded, like `log-only`,
    /// until `schild guard release`. Decided at query time from the
    /// quarantine state, never compiled into an artifact, and no feed's
    /// action (a configuration cannot name it).
    #[serde(skip_deserializing)]
    Quarantine,
}

impl Action {
    pub const ALL: [Action; 9] = [
        Action::Nxdomain,
        Action::Nodata,
        Action::Refused,
        Action::Drop,
        Action::Sinkhole,
        Action::LogOnly,
        Action::TcpOnly,
        Action::LocalData,
        Action::Quarantine,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Nxdomain => "nxdomain",
            Action::Nodata => "nodata",
            Action::Refused => "refused",
            Action::Drop => "drop",
            Action::Sinkhole => "sinkhole",
            Action::LogOnly => "log-only",
            Action::TcpOnly => "tcp-only",
            Action::LocalData => "local-data",
            Action::Quarantine => "quarantine",
        }
    }

    /// Whether the answer is changed (everything but `log-only` and
    /// `quarantine`).
    pub fn enforces(self) -> bool {
        !matches!(self, Action::LogOnly | Action::Quarantine)
    }

    pub(crate) fn to_u8(self) -> u8 {
        match self {
            Action::Nxdomain => 0,
            Action::Nodata => 1,
            Action::Refused => 2,
            Action::Drop => 3,
            Action::Sinkhole => 4,
            Action::LogOnly => 5,
            Action::TcpOnly => 6,
            Action::LocalData => 7,
            // Never compiled (decided at query time); read back, 8 is
            // unknown and fails closed.
            Action::Quarantine => 8,
        }
    }

    pub(crate) fn from_u8(v: u8) -> Action {
        match v {
            1 => Action::Nodata,
            2 => Action::Refused,
            3 => Action::Drop,
            4 => Action::Sinkhole,
            5 => Action::LogOnly,
            6 => Action::TcpOnly,
            7 => Action::LocalData,
            // 0, and anything a damaged table could hold: fail closed.
            _ => Action::Nxdomain,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The indicator types schild acts on, named as MISP names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub enum IocType {
    /// The name and all its subdomains.
    Domain,
    /// The exact name only.
    Hostname,
    /// `domain|ip`: the domain part as a domain, the address as an IP trigger.
    DomainIp,
    /// The URL's host, exact.
    Url,
    /// A destination address or network: a response-IP trigger.
    IpDst,
    /// A source address or network: also a response-IP trigger, as in MISP's RPZ export.
    IpSrc,
}

impl IocType {
    /// Parse a MISP attribute type. `None` for types schild does not act on.
    pub fn from_misp(t: &str) -> Option<IocType> {
        Some(match t {
            "domain" => IocType::Domain,
            "hostname" => IocType::Hostname,
            "domain|ip" => IocType::DomainIp,
            "url" => IocType::Url,
            "ip-dst" => IocType::IpDst,
            "ip-src" => IocType::IpSrc,
            _ => return None,
        })
    }

    pub fn as_misp(self) -> &'static str {
        match self {
            IocType::Domain => "domain",
            IocType::Hostname => "hostname",
            IocType::DomainIp => "domain|ip",
            IocType::Url => "url",
            IocType::IpDst => "ip-dst",
            IocType::IpSrc => "ip-src",
        }
    }
}

impl fmt::Display for IocType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_misp())
    }
}

/// Index of a feed in the order of the configuration.
pub type FeedId = u16;
/// Index of an event in the artifact's event table.
pub type EventId = u32;

/// One indicator as a feed reader hands it to the compiler. Borrowed, so
/// that a ten-million-line list does not become ten million allocations.
#[derive(Debug, Clone, Copy)]
pub struct IocRecord<'a> {
    /// The MISP type as the feed wrote it (`domain`, `hostname`, `ip-dst`…).
    pub misp_type: &'a str,
    pub value: &'a str,
    pub to_ids: bool,
    pub deleted: bool,
    pub event: Option<EventId>,
    pub attribute_uuid: Option<&'a str>,
    pub tags: &'a [String],
}

impl<'a> IocRecord<'a> {
    /// An entry of a plain list: actionable, no event, no tags.
    pub fn plain(misp_type: &'a str, value: &'a str) -> IocRecord<'a> {
        IocRecord {
            misp_type,
            value,
            to_ids: true,
            deleted: false,
            event: None,
            attribute_uuid: None,
            tags: &[],
        }
    }
}

/// A feed as recorded in the artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedInfo {
    pub name: String,
    /// Feed type as configured (`misp-feed`, `domains`…).
    pub kind: String,
    pub action: Action,
    /// Where it was pulled from, with any credentials removed.
    pub location: String,
}

/// A MISP event (or STIX bundle / report) that indicators belong to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventInfo {
    pub feed: FeedId,
    pub uuid: String,
    pub info: String,
    pub tags: Vec<String>,
}

/// Where one indicator came from: what `check`, logs and sightings name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Provenance {
    pub feed: FeedId,
    pub ioc_type: IocType,
    pub event: Option<EventId>,
    pub attribute_uuid: Option<String>,
    pub tags: Vec<String>,
    /// The indicator as written, when it differs from the matched name
    /// (a URL, a `domain|ip` pair, a wildcard).
    pub value: Option<String>,
    /// The record's own action, when it is not the feed's (an `rpz`
    /// feed's `CNAME *.`, `rpz-drop.`, local data…).
    pub action: Option<Action>,
    /// Local data: an index into [`crate::policy::Meta::local_data`].
    pub local: Option<u32>,
}

/// One record of RPZ local data, answered as given for its trigger (the
/// owner is the query name, so a wildcard trigger answers every name under
/// it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LocalRecord {
    A(std::net::Ipv4Addr),
    Aaaa(std::net::Ipv6Addr),
    /// The character-strings of a TXT record.
    Txt(Vec<String>),
    /// A CNAME to this absolute name, lower-case, without the trailing
    /// dot (a walled garden).
    Cname(String),
}

impl LocalRecord {
    /// The record type's mnemonic.
    pub fn type_str(&self) -> &'static str {
        match self {
            LocalRecord::A(_) => "A",
            LocalRecord::Aaaa(_) => "AAAA",
            LocalRecord::Txt(_) => "TXT",
            LocalRecord::Cname(_) => "CNAME",
        }
    }

    /// The record's data in zone-file form (`CNAME` targets absolute).
    pub fn rdata_text(&self) -> String {
        match self {
            LocalRecord::A(a) => a.to_string(),
            LocalRecord::Aaaa(a) => a.to_string(),
            LocalRecord::Txt(parts) => parts
                .iter()
                .map(|p| {
                    let mut q = String::with_capacity(p.len() + 2);
                    q.push('"');
                    // RFC 1035 5.1: `\"`, `\\`, and `\DDD` for every
                    // octet outside printable ASCII (a zone file is one
                    // record a line).
                    for &b in p.as_bytes() {
                        match b {
                            b'"' | b'\\' => {
                                q.push('\\');
                                q.push(char::from(b));
                            }
                            0x20..=0x7e => q.push(char::from(b)),
                            _ => q.push_str(&format!("\\{b:03}")),
                        }
                    }
                    q.push('"');
                    q
                })
                .collect::<Vec<_>>()
                .join(" "),
            LocalRecord::Cname(n) => format!("{n}."),
        }
    }
}

/// What one record of an RPZ zone says to do with its trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RpzRule {
    /// `CNAME .` (NXDOMAIN), `CNAME *.` (NODATA), `rpz-drop.`, `rpz-tcp-only.`.
    Action(Action),
    /// `CNAME rpz-passthru.`: an allowlist entry for the trigger.
    Passthru,
    /// Local data.
    Local(LocalRecord),
}
