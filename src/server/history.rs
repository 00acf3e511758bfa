//! The name history's recorder: the query path hands each answered name
//! and its client to a bounded queue with `try_send` (a full queue drops
//! and counts, as `hits` does); one task aggregates them into today's
//! table ([`crate::history::Today`]), writes it to its day file every
//! minute while it changes, when the day ends and at shutdown, and expires
//! old days. The names travel in a fixed buffer: nothing is allocated on
//! the query path.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::rr::LowerName;
use prometheus::IntCounter;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::error::error_chain;
use crate::history::{self, Today};
use crate::sightings::log::Pseudonymiser;

/// Queued names before new ones are dropped.
const QUEUE: usize = 65_536;
/// How often today's table is written while it changes.
const FLUSH: Duration = Duration::from_secs(60);

/// A name as asked (lowercase labels joined by dots), inline.
struct Asked {
    len: u8,
    name: [u8; 255],
    client: IpAddr,
}

/// The sending half, held by the query path. Never blocks, never allocates.
#[derive(Clone)]
pub struct HistorySink {
    tx: mpsc::Sender<Asked>,
    dropped: IntCounter,
}

impl HistorySink {
    /// Hand over an answered name, or count it as dropped.
    pub fn record(&self, name: &LowerName, client: IpAddr) {
        let mut a = Asked {
            len: 0,
            name: [0; 255],
            client,
        };
        let mut at = 0usize;
        for label in name.iter() {
            let need = label.len() + usize::from(at > 0);
            if at + need > a.name.len() {
                return;
            }
            if at > 0 {
                a.name[at] = b'.';
                at += 1;
            }
            a.name[at..at + label.len()].copy_from_slice(label);
            at += label.len();
        }
        if at == 0 {
            return; // the root
        }
        a.len = at as u8;
        if self.tx.try_send(a).is_err() {
            self.dropped.inc();
        }
    }
}

/// Today's table, shared with the retro-hunt.
pub type TodayHandle = Arc<Mutex<Today>>;

/// Start the recorder (with `[history]` days > 0): the sink for the
/// handler, today's table, and the task (until `cancel`, then a last
/// write).
pub fn start(
    config: &Config,
    dropped: IntCounter,
    cancel: CancellationToken,
) -> (HistorySink, TodayHandle, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let h = &config.history;
    let dir = config.history_dir();
    let today = history::day_of(history::now());
    history::expire(&dir, today, h.days);
    let table = Arc::new(Mutex::new(Today::resume(
        &dir,
        today,
        h.max_names_per_day,
        h.clients_per_name,
    )));
    let pseudo = Pseudonymiser::new(
        config.sightings.client_privacy,
        config.pseudonym_key_path(),
        config.sightings.pseudonym_rotate,
    );
    let task = tokio::spawn(run(
        Recorder {
            dir,
            days: h.days,
            max_names: h.max_names_per_day,
            clients_per_name: h.clients_per_name,
            pseudo,
            table: table.clone(),
            dropped: dropped.clone(),
            reported_full: false,
        },
        rx,
        cancel,
    ));
    (HistorySink { tx, dropped }, table, task)
}

struct Recorder {
    dir: PathBuf,
    days: u32,
    max_names: usize,
    clients_per_name: usize,
    pseudo: Pseudonymiser,
    table: TodayHandle,
    dropped: IntCounter,
    reported_full: bool,
}

impl Recorder {
    fn add(&mut self, batch: &[Asked]) {
        let now = history::now();
        let day = history::day_of(now);
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if t.day() != day {
            // The day ended: write it, start the next, expire old ones.
            if let Err(e) = t.write(&self.dir) {
                tracing::error!(error = %error_chain(&e), "cannot write the name history of the day that ended");
            }
            *t = Today::new(day, self.max_names, self.clients_per_name);
            history::expire(&self.dir, day, self.days);
            self.reported_full = false;
        }
        for a in batch {
            let Ok(name) = std::str::from_utf8(&a.name[..usize::from(a.len)]) else {
                continue;
            };
            // Names as a resolver sees them; anything odd is not history.
            if !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
            {
                continue;
            }
            let pseudo = &mut self.pseudo;
            if !t.record(name, a.client, now, |ip| pseudo.client(ip)) {
                self.dropped.inc();
                if !self.reported_full {
                    self.reported_full = true;
                    tracing::warn!(
                        max_names_per_day = self.max_names,
                        "the name history of today is full; new names are not recorded until tomorrow"
                    );
                }
            }
        }
    }

    fn flush(&self) {
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if t.dirty()
            && let Err(e) = t.write(&self.dir)
        {
            tracing::error!(error = %error_chain(&e), "cannot write the name history");
        }
    }
}

async fn run(mut r: Recorder, mut rx: mpsc::Receiver<Asked>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(FLUSH);
    tick.tick().await;
    let mut batch = Vec::with_capacity(512);
    loop {
        tokio::select! {
            n = rx.recv_many(&mut batch, 512) => {
                if n == 0 {
                    break;
                }
                r.add(&batch);
                batch.clear();
                // Let the queue fill a while before the next take: one
                // wake-up per pace, not one per query (see sightings::PACE).
                tokio::select! {
                    _ = tokio::time::sleep(crate::sightings::PACE) => {}
                    _ = cancel.cancelled() => break,
                }
            }
            _ = tick.tick() => r.flush(),
            _ = cancel.cancelled() => break,
        }
    }
    // What is still queued, then the last write.
    while let Ok(a) = rx.try_recv() {
        batch.push(a);
    }
    r.add(&batch);
    r.flush();
}
