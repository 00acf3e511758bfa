//! Per-network policy, the pure half: which client group a client is in
//! (a sorted prefix table), and the small name sets the groups and the
//! `[policy]` extras use (a group's `allow_only` names, `rebind_allow`,
//! the resolver-bypass names). Lookups allocate nothing: the name is
//! reversed into a stack buffer and each label boundary is one binary
//! search.
//!
//! Reading the files and wiring the sets into answers is the server's
//! (`server::groups`); deciding a hit under a group's `feeds` is the
//! matcher's ([`super::Policy::lookup_labels_where`]).

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use super::name::MAX_NAME_LEN;

/// A set of names, each standing for itself and its subdomains.
#[derive(Debug, Clone, Default)]
pub struct NameSet {
    /// Reversed, lower-case names (`moc.elpmaxe`), sorted, no duplicates.
    keys: Vec<Box<[u8]>>,
    /// A 256-bit filter over the last two labels of every key (reversed,
    /// as they start its key): a name whose last two labels are in no key
    /// is answered after reversing them, without a search. The bypass set
    /// is asked by every query, so this is the common path.
    tails: [u64; 4],
    /// A key of one label (`nl`): the filter cannot speak for those.
    single_label: bool,
}

/// FNV-1a, folded to a bit of [`NameSet::tails`].
fn tail_bit(reversed_tail: &[u8]) -> (usize, u64) {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in reversed_tail {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let bit = (h ^ (h >> 32)) as usize & 255;
    (bit / 64, 1u64 << (bit % 64))
}

/// The reversed key up to (not including) its second dot: its last two labels.
fn tail_of(key: &[u8]) -> Option<&[u8]> {
    let mut dots = key.iter().enumerate().filter(|(_, b)| **b == b'.');
    dots.next()?;
    Some(match dots.next() {
        Some((i, _)) => &key[..i],
        None => key,
    })
}

impl NameSet {
    /// From normalised names (lower case, no trailing dot).
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> NameSet {
        let mut keys: Vec<Box<[u8]>> = names
            .into_iter()
            .map(|n| {
                let n = n.strip_suffix('.').unwrap_or(n);
                n.bytes()
                    .rev()
                    .map(|b| b.to_ascii_lowercase())
                    .collect::<Vec<u8>>()
                    .into_boxed_slice()
            })
            .filter(|k| !k.is_empty())
            .collect();
        keys.sort_unstable();
        keys.dedup();
        let mut tails = [0u64; 4];
        let mut single_label = false;
        for k in &keys {
            match tail_of(k) {
                Some(t) => {
                    let (w, bit) = tail_bit(t);
                    tails[w] |= bit;
                }
                None => single_label = true,
            }
        }
        NameSet {
            keys,
            tails,
            single_label,
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether the name (labels leftmost first, as hickory's `Name::iter()`
    /// yields them) is in the set or below a name in it; `Some` holds the
    /// length of the entry that matched (the shortest one).
    pub fn matches_labels<'a, I>(&self, labels: I) -> Option<u8>
    where
        I: DoubleEndedIterator<Item = &'a [u8]>,
    {
        if self.keys.is_empty() {
            return None;
        }
        let mut buf = [0u8; MAX_NAME_LEN + 2];
        let mut n = 0;
        for (i, label) in labels.rev().enumerate() {
            if i > 0 {
                // A label boundary: the name so far is a parent (of one
                // label only when some key is a single label).
                if (i > 1 || self.single_label) && self.has(&buf[..n]) {
                    return Some(n.min(u8::MAX as usize) as u8);
                }
                *buf.get_mut(n)? = b'.';
                n += 1;
            }
            let dst = buf.get_mut(n..n + label.len())?;
            for (d, &b) in dst.iter_mut().zip(label.iter().rev()) {
                *d = b.to_ascii_lowercase();
            }
            n += label.len();
            if i == 1 && !self.single_label {
                // The last two labels: in no key, so in no name of the set.
                let (w, bit) = tail_bit(&buf[..n]);
                if self.tails[w] & bit == 0 {
                    return None;
                }
            }
        }
        (n > 0 && self.has(&buf[..n])).then_some(n.min(u8::MAX as usize) as u8)
    }

    /// The same for a name in presentation form (`www.Example.org.`).
    pub fn matches_str(&self, name: &str) -> Option<u8> {
        let name = name.strip_suffix('.').unwrap_or(name);
        self.matches_labels(name.split('.').map(str::as_bytes))
    }

    fn has(&self, key: &[u8]) -> bool {
        self.keys.binary_search_by(|k| (**k).cmp(key)).is_ok()
    }
}

/// What a client group does with an IOC hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupAction {
    /// The feed's action, as for every other client.
    #[default]
    Feed,
    /// Record the hit as a sighting, answer normally.
    LogOnly,
}

/// One `[[client_group]]`, ready for queries.
#[derive(Debug, Clone)]
pub struct ClientGroup {
    /// Its configured name: the metric label and the sightings log field.
    pub name: Arc<str>,
    /// Default-deny: only these names (and their subdomains) resolve.
    pub allow_only: Option<NameSet>,
    pub action: GroupAction,
    /// Only these feeds (by name) apply; `None`: all of them.
    pub feeds: Option<Vec<String>>,
}

impl ClientGroup {
    /// Whether a feed (by its name) applies to this group.
    pub fn uses_feed(&self, feed: &str) -> bool {
        self.feeds
            .as_ref()
            .is_none_or(|fs| fs.iter().any(|f| f == feed))
    }
}

/// The groups in configuration order, and the networks of each laid out
/// for lookup: sorted by (prefix length, network), one binary search per
/// distinct prefix length. The first group (in configuration order) whose
/// networks hold the client wins, not the most specific network.
#[derive(Debug, Clone, Default)]
pub struct GroupTable {
    groups: Vec<ClientGroup>,
    v4: Vec<(u8, u32, u16)>,
    v4_lens: Vec<u8>,
    v6: Vec<(u8, u128, u16)>,
    v6_lens: Vec<u8>,
}

impl GroupTable {
    /// `groups` with the networks of each (same order). At most 65535 groups.
    pub fn new(groups: Vec<(ClientGroup, Vec<IpNet>)>) -> GroupTable {
        let mut t = GroupTable::default();
        for (i, (g, nets)) in groups.into_iter().enumerate() {
            let i = u16::try_from(i).unwrap_or(u16::MAX);
            for n in nets {
                match n.trunc() {
                    IpNet::V4(n) => t.v4.push((n.prefix_len(), u32::from(n.network()), i)),
                    IpNet::V6(n) => t.v6.push((n.prefix_len(), u128::from(n.network()), i)),
                }
            }
            t.groups.push(g);
        }
        // The same network in two groups: the first group keeps it.
        t.v4.sort_unstable();
        t.v4.dedup_by_key(|e| (e.0, e.1));
        t.v6.sort_unstable();
        t.v6.dedup_by_key(|e| (e.0, e.1));
        t.v4_lens = t.v4.iter().map(|e| e.0).collect();
        t.v4_lens.dedup();
        t.v6_lens = t.v6.iter().map(|e| e.0).collect();
        t.v6_lens.dedup();
        t
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    pub fn groups(&self) -> &[ClientGroup] {
        &self.groups
    }

    /// The index of the client's group, if it is in one. IPv4-mapped IPv6
    /// sources count as their IPv4 address.
    pub fn lookup(&self, client: IpAddr) -> Option<usize> {
        if self.groups.is_empty() {
            return None;
        }
        let best = match client.to_canonical() {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4_lens
                    .iter()
                    .filter_map(|&len| {
                        let net = if len == 0 {
                            0
                        } else {
                            a & (u32::MAX << (32 - u32::from(len)))
                        };
                        self.v4
                            .binary_search_by(|e| (e.0, e.1).cmp(&(len, net)))
                            .ok()
                            .map(|i| self.v4[i].2)
                    })
                    .min()
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6_lens
                    .iter()
                    .filter_map(|&len| {
                        let net = if len == 0 {
                            0
                        } else {
                            a & (u128::MAX << (128 - u32::from(len)))
                        };
                        self.v6
                            .binary_search_by(|e| (e.0, e.1).cmp(&(len, net)))
                            .ok()
                            .map(|i| self.v6[i].2)
                    })
                    .min()
            }
        };
        best.map(usize::from)
    }

    /// The client's group, if it is in one.
    pub fn group_of(&self, client: IpAddr) -> Option<&ClientGroup> {
        self.lookup(client).and_then(|i| self.groups.get(i))
    }
}

/// Whether an address in an answer is one a public name must not point at
/// (DNS rebinding): RFC 1918, 127/8, 169.254/16, 0.0.0.0/8 (as Unbound's
/// `private-address` lists, plus "this network"), fc00::/7, fe80::/10, ::1,
/// the unspecified address, and the IPv4-mapped forms of the IPv4 ranges.
pub fn is_private_answer(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(a) => {
            let o = a.octets();
            a.is_private() || a.is_loopback() || a.is_link_local() || o[0] == 0
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            a.is_loopback()
                || a.is_unspecified()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(name: &str) -> ClientGroup {
        ClientGroup {
            name: name.into(),
            allow_only: None,
            action: GroupAction::Feed,
            feeds: None,
        }
    }

    fn nets(s: &[&str]) -> Vec<IpNet> {
        s.iter().map(|n| n.parse().expect("net")).collect()
    }

    #[test]
    fn name_sets_match_names_and_subdomains_at_label_boundaries() {
        let s = NameSet::new(["example.org", "Devices.Vendor.NL"]);
        assert_eq!(s.matches_str("example.org"), Some(11));
        assert_eq!(s.matches_str("WWW.example.org."), Some(11));
        assert_eq!(s.matches_str("a.b.devices.vendor.nl"), Some(17));
        assert_eq!(s.matches_str("badexample.org"), None);
        assert_eq!(s.matches_str("org"), None);
        assert_eq!(s.matches_str("vendor.nl"), None);
        assert_eq!(NameSet::default().matches_str("example.org"), None);
        // A single-label key turns the two-label filter off.
        let tld = NameSet::new(["nl", "mask.icloud.com"]);
        assert_eq!(tld.matches_str("www.hospital.nl"), Some(2));
        assert_eq!(tld.matches_str("nl"), Some(2));
        assert_eq!(tld.matches_str("a.mask.icloud.com"), Some(15));
        assert_eq!(tld.matches_str("icloud.com"), None);
        assert_eq!(tld.matches_str("org"), None);
        // Many names: every one found through the filter, none else.
        let names: Vec<String> = (0..2000)
            .map(|i| format!("h{i}.d{}.example", i % 97))
            .collect();
        let many = NameSet::new(names.iter().map(String::as_str));
        for n in &names {
            assert!(many.matches_str(&format!("x.{n}")).is_some(), "{n}");
        }
        assert_eq!(many.matches_str("d5.example"), None);
        assert_eq!(many.matches_str("h1.d1.other"), None);
        let long = format!("{}.example.org", "a.".repeat(200));
        assert_eq!(s.matches_str(&long), Some(11));
    }

    #[test]
    fn the_first_group_in_configuration_order_wins() {
        let t = GroupTable::new(vec![
            (group("wide"), nets(&["10.0.0.0/8"])),
            (group("narrow"), nets(&["10.20.0.0/16", "2001:db8::/32"])),
            (group("v6"), nets(&["2001:db8:1::/48", "::1/128"])),
        ]);
        let of = |a: &str| {
            t.group_of(a.parse().expect("ip"))
                .map(|g| g.name.to_string())
        };
        assert_eq!(of("10.20.1.1").as_deref(), Some("wide"));
        assert_eq!(of("10.1.1.1").as_deref(), Some("wide"));
        assert_eq!(of("::ffff:10.1.1.1").as_deref(), Some("wide"));
        assert_eq!(of("2001:db8:1::5").as_deref(), Some("narrow"));
        assert_eq!(of("::1").as_deref(), Some("v6"));
        assert_eq!(of("192.168.1.1"), None);
        assert_eq!(of("2001:db9::1"), None);
        assert_eq!(
            GroupTable::default()
                .group_of("10.0.0.1".parse().expect("ip"))
                .map(|g| g.name.clone()),
            None
        );
    }

    #[test]
    fn rebinding_ranges() {
        for a in [
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.0.1",
            "127.0.0.1",
            "169.254.1.1",
            "0.0.0.0",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_private_answer(a.parse().expect("ip")), "{a}");
        }
        for a in [
            "192.0.2.1",
            "172.32.0.1",
            "8.8.8.8",
            "2001:db8::1",
            "fec0::1",
            "::ffff:192.0.2.1",
        ] {
            assert!(!is_private_answer(a.parse().expect("ip")), "{a}");
        }
    }
}
