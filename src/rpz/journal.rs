//! The IXFR journal: what changed in the zone between two list versions.
//!
//! Each reload that changes the serial writes one file
//! `state_dir/rpz/journal/<from>-<to>.ixfr`, computed by walking the old
//! and the new policy side by side (both walks are in the same order, so
//! the merge needs no memory beyond the two cursors). A line is a trigger
//! removed (`-`) or added (`+`) with its RPZ action; records are made from
//! it with the zone settings when a secondary asks (RFC 1995). The journal
//! is bounded in files and bytes; the oldest steps go first, and a
//! secondary further behind gets the whole zone instead.

use std::cmp::Ordering;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::zone::{Section, Target, Trigger, Triggers, ZoneSettings};
use crate::policy::Policy;

/// Journal steps kept.
pub const MAX_FILES: usize = 64;
/// Bytes of journal kept in total.
pub const MAX_BYTES: u64 = 256 << 20;

/// Format 2 adds the client flag and the local data of a trigger; a
/// format 1 file (three fields a line) still reads.
const HEADER: &str = "schild-rpz-journal 2";
const HEADER_V1: &str = "schild-rpz-journal 1";

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot write the RPZ journal in {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// One step of the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub from: u32,
    pub to: u32,
    pub removed: u64,
    pub added: u64,
}

/// A change: a trigger removed or added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub added: bool,
    pub trigger: Trigger,
}

#[derive(Debug, Clone)]
pub struct Journal {
    dir: PathBuf,
}

/// Sort key of a trigger in walk order: names by reversed key (the exact
/// name before `*.name`), then addresses.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Name(Vec<u8>, bool),
    /// Answer addresses, then client addresses (`true`).
    Ip(bool, IpAddr, u8),
}

fn key_of(t: &Trigger) -> Key {
    if let Some(net) = t.net {
        return Key::Ip(t.client, net.addr(), net.prefix_len());
    }
    let (base, wild) = match t.owner.strip_prefix("*.") {
        Some(b) => (b, true),
        None => (t.owner.as_str(), false),
    };
    Key::Name(base.bytes().rev().collect(), wild)
}

fn target_code(t: Target) -> &'static str {
    match t {
        Target::Nxdomain => "nxdomain",
        Target::Nodata => "nodata",
        Target::Drop => "drop",
        Target::Passthru => "passthru",
        Target::Sinkhole => "sinkhole",
        Target::TcpOnly => "tcp-only",
        Target::Local => "local",
    }
}

fn parse_target(s: &str) -> Option<Target> {
    Some(match s {
        "nxdomain" => Target::Nxdomain,
        "nodata" => Target::Nodata,
        "drop" => Target::Drop,
        "passthru" => Target::Passthru,
        "sinkhole" => Target::Sinkhole,
        "tcp-only" => Target::TcpOnly,
        "local" => Target::Local,
        _ => return None,
    })
}

struct Walk<'p> {
    t: Triggers<'p>,
    head: Option<(Key, Trigger)>,
}

impl<'p> Walk<'p> {
    fn new(policy: &'p Policy, settings: &'p ZoneSettings) -> Self {
        let mut w = Walk {
            t: Triggers::new(policy, settings, Section::All),
            head: None,
        };
        w.advance();
        w
    }
    fn advance(&mut self) {
        self.head = self.t.next().map(|t| (key_of(t), t.clone()));
    }
}

impl Journal {
    pub fn new(state_dir: &Path) -> Journal {
        Journal {
            dir: state_dir.join("rpz").join("journal"),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Record the step from `old` to `new`. Nothing is written when the
    /// serials are equal. Returns the step written.
    pub fn record(
        &self,
        old: &Policy,
        new: &Policy,
        settings: &ZoneSettings,
    ) -> Result<Option<Step>, JournalError> {
        let from = ZoneSettings::serial_of(old.serial());
        let to = ZoneSettings::serial_of(new.serial());
        if from == to {
            return Ok(None);
        }
        let err = |source| JournalError::Write {
            path: self.dir.clone(),
            source,
        };
        fs::create_dir_all(&self.dir).map_err(err)?;
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir).map_err(err)?;
        let step = {
            let mut out = BufWriter::new(tmp.as_file_mut());
            let step = diff(old, new, settings, from, to, &mut out).map_err(err)?;
            out.flush().map_err(err)?;
            step
        };
        let path = self.dir.join(format!("{from}-{to}.ixfr"));
        tmp.persist(&path).map_err(|e| err(e.error))?;
        self.prune().map_err(err)?;
        Ok(Some(step))
    }

    /// Steps on disk, oldest first (by modification order of serials).
    fn steps(&self) -> Vec<(u32, u32, PathBuf, u64)> {
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut v: Vec<_> = rd
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let (a, b) = name.strip_suffix(".ixfr")?.split_once('-')?;
                let len = e.metadata().ok()?.len();
                Some((a.parse().ok()?, b.parse().ok()?, e.path(), len))
            })
            .collect();
        // Serials grow (RFC 1982); within a 2^31 window the `to` order is
        // the age order.
        v.sort_by(|x, y| serial_cmp(x.1, y.1));
        v
    }

    fn prune(&self) -> io::Result<()> {
        let steps = self.steps();
        let mut total: u64 = steps.iter().map(|s| s.3).sum();
        let mut count = steps.len();
        for s in &steps {
            if count <= MAX_FILES && total <= MAX_BYTES {
                break;
            }
            fs::remove_file(&s.2)?;
            count -= 1;
            total -= s.3;
        }
        Ok(())
    }

    /// The steps that lead from `from` to `to`, or `None` when the journal
    /// does not reach back that far.
    pub fn chain(&self, from: u32, to: u32) -> Option<Vec<(u32, u32, PathBuf)>> {
        let steps = self.steps();
        let mut out = Vec::new();
        let mut at = from;
        while at != to {
            let s = steps.iter().find(|s| s.0 == at)?;
            out.push((s.0, s.1, s.2.clone()));
            at = s.1;
            if out.len() > steps.len() {
                return None;
            }
        }
        Some(out)
    }
}

/// RFC 1982 comparison of two serials.
pub fn serial_cmp(a: u32, b: u32) -> Ordering {
    if a == b {
        Ordering::Equal
    } else if (b.wrapping_sub(a) as i32) > 0 {
        Ordering::Less
    } else {
        Ordering::Greater
    }
}

fn diff(
    old: &Policy,
    new: &Policy,
    settings: &ZoneSettings,
    from: u32,
    to: u32,
    out: &mut impl Write,
) -> io::Result<Step> {
    writeln!(out, "{HEADER} {from} {to}")?;
    let mut step = Step {
        from,
        to,
        removed: 0,
        added: 0,
    };
    let (mut a, mut b) = (Walk::new(old, settings), Walk::new(new, settings));
    let line = |out: &mut dyn Write, sign: char, t: &Trigger| {
        let local = if t.local.is_empty() {
            String::new()
        } else {
            // One JSON array: no tab or newline survives unescaped.
            format!("\t{}", serde_json::to_string(&t.local).unwrap_or_default())
        };
        writeln!(
            out,
            "{sign}\t{}\t{}\t{}{local}",
            t.owner,
            target_code(t.target),
            u8::from(t.client)
        )
    };
    loop {
        match (&a.head, &b.head) {
            (None, None) => break,
            (Some((_, t)), None) => {
                line(out, '-', t)?;
                step.removed += 1;
                a.advance();
            }
            (None, Some((_, t))) => {
                line(out, '+', t)?;
                step.added += 1;
                b.advance();
            }
            (Some((ka, ta)), Some((kb, tb))) => match ka.cmp(kb) {
                Ordering::Less => {
                    line(out, '-', ta)?;
                    step.removed += 1;
                    a.advance();
                }
                Ordering::Greater => {
                    line(out, '+', tb)?;
                    step.added += 1;
                    b.advance();
                }
                Ordering::Equal => {
                    if ta.target != tb.target || ta.local != tb.local {
                        line(out, '-', ta)?;
                        line(out, '+', tb)?;
                        step.removed += 1;
                        step.added += 1;
                    }
                    a.advance();
                    b.advance();
                }
            },
        }
    }
    if a.t.index_damaged || b.t.index_damaged {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a policy's name index is damaged",
        ));
    }
    Ok(step)
}

/// Read the changes of one step: the removals (`added == false`) or the
/// additions, in file order. Lines that do not parse end the read (a
/// damaged file then yields fewer changes; the caller checks the count).
pub fn read_changes(path: &Path, added: bool) -> io::Result<impl Iterator<Item = Trigger>> {
    let mut lines = BufReader::new(File::open(path)?).lines();
    match lines.next() {
        Some(Ok(h)) if h.starts_with(HEADER) || h.starts_with(HEADER_V1) => {}
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not an RPZ journal file",
            ));
        }
    }
    let want = if added { '+' } else { '-' };
    Ok(lines.map_while(Result::ok).filter_map(move |l| {
        let mut f = l.split('\t');
        let sign = f.next()?.chars().next()?;
        let owner = f.next()?;
        let target = parse_target(f.next()?)?;
        let client = f.next().is_some_and(|c| c == "1");
        let local = match f.next() {
            Some(json) => serde_json::from_str(json).ok()?,
            None => Vec::new(),
        };
        (sign == want).then(|| Trigger {
            net: None,
            client,
            owner: owner.to_string(),
            target,
            set: None,
            local,
        })
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_compare_as_rfc_1982_says() {
        assert_eq!(serial_cmp(1, 2), Ordering::Less);
        assert_eq!(serial_cmp(u32::MAX, 1), Ordering::Less);
        assert_eq!(serial_cmp(1, u32::MAX), Ordering::Greater);
        assert_eq!(serial_cmp(7, 7), Ordering::Equal);
    }
}
