//! The local record: one JSON line per hit, for the hospital's own SOC.
//!
//! Client addresses are patient-adjacent data. By default they are replaced
//! by a keyed hash whose key rotates on a schedule (so one workstation can
//! be followed within a day, but not across days, and nobody without the key
//! can recover the address); `full` keeps them, `omit` drops them. The file
//! is rotated by size and age and old files beyond the retention count are
//! deleted. Only the sightings task writes here, never the query path.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::config::ClientPrivacy;

/// Turns client addresses into what the log may hold.
pub struct Pseudonymiser {
    privacy: ClientPrivacy,
    key_path: PathBuf,
    rotate: Duration,
    key: Option<(ring::hmac::Key, u64)>,
    /// Tags already made under the current key: a hospital has a bounded
    /// set of clients, and an infected one asks again and again.
    tags: std::collections::HashMap<IpAddr, [u8; 32]>,
}

/// The most tags remembered before the memo starts over.
const TAGS_KEPT: usize = 65_536;

impl std::fmt::Debug for Pseudonymiser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pseudonymiser")
            .field("privacy", &self.privacy)
            .finish_non_exhaustive()
    }
}

impl Pseudonymiser {
    pub fn new(privacy: ClientPrivacy, key_path: PathBuf, rotate: Duration) -> Pseudonymiser {
        Pseudonymiser {
            privacy,
            key_path,
            rotate,
            key: None,
            tags: std::collections::HashMap::new(),
        }
    }

    /// What it does with addresses.
    pub fn privacy(&self) -> ClientPrivacy {
        self.privacy
    }

    /// The client as the log shows it, or `None` to leave it out.
    pub fn client(&mut self, ip: IpAddr) -> Option<String> {
        let mut s = String::new();
        self.client_into(ip, &mut s).then_some(s)
    }

    /// [`Pseudonymiser::client`] appended to `out`; false (and nothing
    /// appended) to leave the client out.
    pub fn client_into(&mut self, ip: IpAddr, out: &mut String) -> bool {
        match self.privacy {
            ClientPrivacy::Full => {
                use std::fmt::Write;
                let _ = write!(out, "{ip}");
                true
            }
            ClientPrivacy::Omit => false,
            ClientPrivacy::Pseudonymise => {
                // Once per log line, into a kept buffer: no formatter.
                let Some(tag) = self.tag(ip) else {
                    return false;
                };
                out.push_str("p-");
                push_hex(out, &tag[..10]);
                true
            }
        }
    }

    /// The keyed hash of `ip` under the current key (whatever `privacy`
    /// says); `None` while no key can be stored.
    pub fn tag(&mut self, ip: IpAddr) -> Option<[u8; 32]> {
        self.current_key()?;
        if let Some(t) = self.tags.get(&ip) {
            return Some(*t);
        }
        let key = self.key.as_ref().map(|(k, _)| k)?;
        let tag: [u8; 32] = match ip {
            IpAddr::V4(a) => ring::hmac::sign(key, &a.octets()),
            IpAddr::V6(a) => ring::hmac::sign(key, &a.octets()),
        }
        .as_ref()
        .try_into()
        .ok()?;
        if self.tags.len() >= TAGS_KEPT {
            self.tags.clear();
        }
        self.tags.insert(ip, tag);
        Some(tag)
    }

    /// The key for now: loaded from disk (so a restart keeps pseudonyms
    /// stable within a period), replaced when older than the period.
    fn current_key(&mut self) -> Option<&ring::hmac::Key> {
        let now = crate::clock::unix_now();
        let fresh = |created: u64| now.saturating_sub(created) < self.rotate.as_secs();
        if !self.key.as_ref().is_some_and(|(_, c)| fresh(*c)) {
            let loaded = std::fs::read_to_string(&self.key_path).ok().and_then(|t| {
                let (created, hexkey) = t.trim().split_once(' ')?;
                let created: u64 = created.parse().ok()?;
                let raw = unhex(hexkey)?;
                Some((created, raw))
            });
            let (created, raw) = match loaded {
                Some((c, raw)) if fresh(c) && raw.len() == 32 => (c, raw),
                _ => {
                    let mut raw = vec![0u8; 32];
                    rand::Rng::fill(&mut rand::rng(), raw.as_mut_slice());
                    let text = format!("{now} {}\n", hex(&raw));
                    if let Err(e) = crate::fs::write_atomic(&self.key_path, text.as_bytes()) {
                        tracing::error!(error = %e, "cannot store the pseudonym key; client addresses are left out until it can be stored");
                        return None;
                    }
                    tracing::info!("pseudonym key rotated");
                    (now, raw)
                }
            };
            self.key = Some((ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &raw), created));
            self.tags.clear();
        }
        self.key.as_ref().map(|(k, _)| k)
    }
}

fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    push_hex(&mut s, b);
    s
}

fn push_hex(s: &mut String, b: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for x in b {
        s.push(char::from(DIGITS[usize::from(x >> 4)]));
        s.push(char::from(DIGITS[usize::from(x & 0x0f)]));
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// One line of the local record.
///
/// The sightings task writes it with [`LogLine::write_json`], which gives
/// byte for byte what serde_json gives for this derive (a unit test holds
/// the two together).
#[derive(Debug, Serialize)]
pub struct LogLine<'a> {
    pub time: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<&'a str>,
    pub qname: &'a str,
    pub qtype: &'a str,
    pub transport: &'a str,
    pub action: &'a str,
    /// The matched indicator: a listed name or an address.
    pub ioc: &'a str,
    pub feed: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_uuid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_info: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attribute_uuid: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub tags: &'a [String],
    /// The client's `[[client_group]]`, if it is in one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_group: Option<&'a str>,
    /// Identical hits (same client, name and type) folded into this line
    /// within one second; the time is the first one's.
    pub count: u32,
}

impl LogLine<'_> {
    /// The line as JSON (no newline), appended to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        field(out, "time", self.time, true);
        if let Some(c) = self.client {
            field(out, "client", c, false);
        }
        field(out, "qname", self.qname, false);
        field(out, "qtype", self.qtype, false);
        field(out, "transport", self.transport, false);
        field(out, "action", self.action, false);
        field(out, "ioc", self.ioc, false);
        field(out, "feed", self.feed, false);
        for (key, v) in [
            ("event_uuid", self.event_uuid),
            ("event_info", self.event_info),
            ("attribute_uuid", self.attribute_uuid),
        ] {
            if let Some(v) = v {
                field(out, key, v, false);
            }
        }
        if !self.tags.is_empty() {
            out.extend_from_slice(b",\"tags\":[");
            for (i, t) in self.tags.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                json_str(out, t);
            }
            out.push(b']');
        }
        if let Some(g) = self.client_group {
            field(out, "client_group", g, false);
        }
        out.extend_from_slice(b",\"count\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.count).as_bytes());
        out.push(b'}');
    }
}

/// `"key":"value"`, after a comma unless it is the first.
fn field(out: &mut Vec<u8>, key: &str, value: &str, first: bool) {
    if !first {
        out.push(b',');
    }
    out.push(b'"');
    out.extend_from_slice(key.as_bytes()); // keys are plain ASCII
    out.extend_from_slice(b"\":");
    json_str(out, value);
}

/// A JSON string as serde_json writes it: `"` and `\` escaped, the short
/// escapes for backspace, form feed, newline, return and tab, `\u00XX`
/// for the other control characters, everything else as it is.
fn json_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        // Nearly every byte: three compares, no jump table.
        if b >= 0x20 && b != b'"' && b != b'\\' {
            continue;
        }
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x0c => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1f => &[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ],
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// The RFC 3339 text of a time, made once per second however many lines
/// fall in it.
#[derive(Default)]
pub struct TimeText {
    secs: Option<u64>,
    text: String,
}

impl TimeText {
    /// `t` as [`rfc3339`] writes it.
    pub fn at(&mut self, t: SystemTime) -> &str {
        let secs = crate::clock::unix(t);
        if self.secs != Some(secs) {
            self.text = rfc3339(t);
            self.secs = Some(secs);
        }
        &self.text
    }
}

/// The rotating JSONL writer.
pub struct HitLog {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    max_age: Duration,
    file: Option<BufWriter<File>>,
    bytes: u64,
    opened: SystemTime,
    /// The line being written, kept between lines (no allocation a line).
    line: Vec<u8>,
}

impl std::fmt::Debug for HitLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HitLog")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl HitLog {
    pub fn new(path: PathBuf, max_bytes: u64, keep: u32, max_age: Duration) -> HitLog {
        HitLog {
            path,
            max_bytes: max_bytes.max(4096),
            keep,
            max_age,
            file: None,
            bytes: 0,
            opened: SystemTime::now(),
            line: Vec::with_capacity(1024),
        }
    }

    fn open(&mut self) -> std::io::Result<&mut BufWriter<File>> {
        if self.file.is_none() {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            let meta = f.metadata()?;
            self.bytes = meta.len();
            // Age counts from the file's creation (or last change when the
            // platform cannot tell).
            self.opened = meta
                .created()
                .or_else(|_| meta.modified())
                .unwrap_or_else(|_| SystemTime::now());
            self.file = Some(BufWriter::with_capacity(64 * 1024, f));
        }
        // Just set above when it was None.
        self.file
            .as_mut()
            .ok_or_else(|| std::io::Error::other("log file not open"))
    }

    /// Append one line (buffered; call [`HitLog::flush`] after a batch).
    pub fn write<T: Serialize>(&mut self, line: &T) -> std::io::Result<()> {
        self.write_with(|buf| serde_json::to_writer(buf, line).map_err(std::io::Error::other))
    }

    /// Append one hit's line, written without serde (see
    /// [`LogLine::write_json`]).
    pub fn write_hit(&mut self, line: &LogLine<'_>) -> std::io::Result<()> {
        self.write_with(|buf| {
            line.write_json(buf);
            Ok(())
        })
    }

    fn write_with(
        &mut self,
        json: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let mut buf = std::mem::take(&mut self.line);
        buf.clear();
        let done = json(&mut buf).and_then(|()| self.write_line(&mut buf));
        if buf.capacity() <= 64 * 1024 {
            self.line = buf; // a huge line's buffer is not kept
        }
        done
    }

    fn write_line(&mut self, buf: &mut Vec<u8>) -> std::io::Result<()> {
        buf.push(b'\n');
        let too_old = self.opened.elapsed().is_ok_and(|age| age > self.max_age);
        if self.file.is_some() && (self.bytes + buf.len() as u64 > self.max_bytes || too_old) {
            self.rotate()?;
        } else if self.file.is_none() {
            self.open()?;
            let too_old = self.opened.elapsed().is_ok_and(|age| age > self.max_age);
            if self.bytes > 0 && (self.bytes + buf.len() as u64 > self.max_bytes || too_old) {
                self.rotate()?;
            }
        }
        let f = self.open()?;
        f.write_all(buf)?;
        self.bytes += buf.len() as u64;
        Ok(())
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        if let Some(f) = self.file.as_mut() {
            f.flush()?;
        }
        Ok(())
    }

    /// `sightings.jsonl` -> `sightings.jsonl.<unix-nanos>`; delete the oldest
    /// beyond `keep`.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.flush()?;
        self.file = None;
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let rotated = PathBuf::from(format!("{}.{stamp:020}", self.path.display()));
        std::fs::rename(&self.path, &rotated)?;
        self.prune()?;
        self.open()?;
        Ok(())
    }

    fn prune(&self) -> std::io::Result<()> {
        let Some(dir) = self.path.parent() else {
            return Ok(());
        };
        let Some(base) = self.path.file_name().and_then(|n| n.to_str()) else {
            return Ok(());
        };
        let prefix = format!("{base}.");
        let mut old: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix))
            })
            .collect();
        old.sort();
        while old.len() > self.keep as usize {
            let p = old.remove(0);
            std::fs::remove_file(&p)?;
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// RFC 3339 time in UTC, seconds precision.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_stable_within_a_period_and_hide_the_address() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("key");
        let mut p = Pseudonymiser::new(
            ClientPrivacy::Pseudonymise,
            key.clone(),
            Duration::from_secs(3600),
        );
        let a = p
            .client("10.1.2.3".parse().expect("ip"))
            .expect("pseudonym");
        let b = p
            .client("10.1.2.3".parse().expect("ip"))
            .expect("pseudonym");
        let c = p
            .client("10.1.2.4".parse().expect("ip"))
            .expect("pseudonym");
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(!a.contains("10.1.2"));
        // A restart within the period keeps the key.
        let mut p2 = Pseudonymiser::new(
            ClientPrivacy::Pseudonymise,
            key.clone(),
            Duration::from_secs(3600),
        );
        assert_eq!(p2.client("10.1.2.3".parse().expect("ip")), Some(a.clone()));
        // An expired key is replaced: pseudonyms change.
        std::fs::write(&key, format!("1 {}\n", "00".repeat(32))).expect("write");
        let mut p3 =
            Pseudonymiser::new(ClientPrivacy::Pseudonymise, key, Duration::from_secs(3600));
        assert_ne!(p3.client("10.1.2.3".parse().expect("ip")), Some(a));
    }

    #[test]
    fn privacy_modes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ip: IpAddr = "10.1.2.3".parse().expect("ip");
        let mut full = Pseudonymiser::new(
            ClientPrivacy::Full,
            dir.path().join("k"),
            Duration::from_secs(60),
        );
        assert_eq!(full.client(ip).as_deref(), Some("10.1.2.3"));
        let mut omit = Pseudonymiser::new(
            ClientPrivacy::Omit,
            dir.path().join("k"),
            Duration::from_secs(60),
        );
        assert_eq!(omit.client(ip), None);
    }

    fn line<'a>(strings: &'a [String; 6], tags: &'a [String], count: u32) -> LogLine<'a> {
        LogLine {
            time: &strings[0],
            client: Some(strings[1].as_str()).filter(|c| !c.is_empty()),
            qname: &strings[2],
            qtype: "AAAA",
            transport: "dot",
            action: "log-only",
            ioc: &strings[3],
            feed: &strings[4],
            event_uuid: Some(strings[5].as_str()).filter(|_| count.is_multiple_of(2)),
            event_info: Some(strings[5].as_str()).filter(|_| count.is_multiple_of(3)),
            attribute_uuid: Some(strings[4].as_str()).filter(|_| count.is_multiple_of(5)),
            tags,
            client_group: Some(strings[1].as_str()).filter(|_| count.is_multiple_of(7)),
            count,
        }
    }

    #[test]
    fn hit_lines_are_the_json_serde_writes() {
        let s = |v: [&str; 6]| v.map(String::from);
        let cases = [
            s([
                "2026-11-28T00:00:00Z",
                "p-0a1b",
                "evil.example",
                "evil.example",
                "zdn",
                "e",
            ]),
            s([
                "t",
                "",
                "a\"b\\c",
                "x\ny\rz\tw",
                "\u{8}\u{c}\u{0}\u{1f}\u{7f}",
                "caf\u{e9} \u{1f600}",
            ]),
            s([
                "",
                "10.0.0.1",
                "\u{2028}",
                "</script>",
                "{\"k\":1}",
                "a\u{1}b",
            ]),
        ];
        let tags = [vec![], vec!["tlp:white".to_string(), "q\"\n".to_string()]];
        for (i, c) in cases.iter().enumerate() {
            for t in &tags {
                for count in [0, 1, 2, 3, 5, 7, 210, u32::MAX] {
                    let l = line(c, t, count);
                    let mut ours = Vec::new();
                    l.write_json(&mut ours);
                    let serde = serde_json::to_vec(&l).expect("serialize");
                    assert_eq!(
                        String::from_utf8_lossy(&ours),
                        String::from_utf8_lossy(&serde),
                        "case {i}, count {count}"
                    );
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn any_hit_line_is_the_json_serde_writes(
            strings in proptest::array::uniform6(proptest::prelude::any::<String>()),
            tags in proptest::collection::vec(proptest::prelude::any::<String>(), 0..3),
            count in proptest::prelude::any::<u32>(),
        ) {
            let l = line(&strings, &tags, count);
            let mut ours = Vec::new();
            l.write_json(&mut ours);
            proptest::prop_assert_eq!(ours, serde_json::to_vec(&l).expect("serialize"));
        }
    }

    #[test]
    fn the_time_text_changes_with_the_second() {
        let mut t = TimeText::default();
        let at = UNIX_EPOCH + Duration::from_secs(1_764_547_200);
        assert_eq!(t.at(at), "2025-12-01T00:00:00Z");
        assert_eq!(
            t.at(at + Duration::from_millis(999)),
            "2025-12-01T00:00:00Z"
        );
        assert_eq!(t.at(at + Duration::from_secs(61)), "2025-12-01T00:01:01Z");
        assert_eq!(t.at(at), rfc3339(at));
    }

    #[test]
    fn log_rotates_by_size_and_keeps_a_bounded_number() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sightings.jsonl");
        let mut log = HitLog::new(path.clone(), 4096, 2, Duration::from_secs(3600));
        for i in 0..200 {
            let q = format!("host{i}.evil.example");
            log.write(&LogLine {
                time: "2026-11-28T00:00:00Z",
                client: None,
                qname: &q,
                qtype: "A",
                transport: "udp",
                action: "nxdomain",
                ioc: "evil.example",
                feed: "zdn",
                event_uuid: None,
                event_info: None,
                attribute_uuid: None,
                tags: &[],
                client_group: None,
                count: 1,
            })
            .expect("write");
        }
        log.flush().expect("flush");
        let files: Vec<_> = std::fs::read_dir(dir.path())
            .expect("ls")
            .filter_map(Result::ok)
            .collect();
        assert_eq!(files.len(), 3, "current file plus two kept");
        assert!(std::fs::metadata(&path).expect("current").len() <= 4096);
    }
}
