//! The RPZ primary inside `schild serve`: SOA, AXFR and IXFR for the zone.
//!
//! hickory's own AXFR puts the zone in one message and stops at 64 KiB.
//! Here a transfer is a stream of messages of a few hundred records, each
//! made from the artifact just before it is sent and signed with TSIG over
//! the previous message's MAC. The transfer runs in its own task and hands
//! each message to the connection's bounded send queue
//! (`server::listen`), waiting whenever it is full: memory stays at a few
//! messages whatever the zone's size. A client that stops reading is
//! dropped by the connection after `server.tcp_idle_secs`, which closes the
//! queue and ends the transfer.
//!
//! Access: transfers and SOA queries only from `allow_transfer` networks,
//! transfers only with TSIG when a key is configured; everything else about
//! the zone is REFUSED, and a bad signature gets NOTAUTH.

use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_server::proto::op::{Edns, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::rdata::tsig::TSIG;
use hickory_server::proto::rr::{LowerName, RData, Record, RecordType, TSigner};
use hickory_server::proto::serialize::binary::BinDecoder;
use hickory_server::server::{Request, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponseBuilder, Queries};
use ipnet::IpNet;
use tokio_util::sync::CancellationToken;

use super::journal::{self, Journal, JournalError, Step};
use super::notify::Notifier;
use super::zone::{self, Section, Trigger, Triggers, ZoneError, ZoneSettings};
use crate::config::Config;
use crate::policy::Policy;
use crate::tsig::{self, ChainSigner, RequestAuth, TsigKey, TsigKeyError};
use crate::wire::{self, message_response};

/// Records per message, and the size a message is filled to. BIND and
/// Unbound accept anything up to 64 KiB; smaller messages keep memory and
/// latency low.
const MAX_RECORDS: usize = 500;
const TARGET_BYTES: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum RpzError {
    #[error(transparent)]
    Zone(#[from] ZoneError),
    #[error(transparent)]
    Key(#[from] TsigKeyError),
    #[error("the TSIG key cannot be used")]
    Signer(#[source] hickory_server::proto::dnssec::DnsSecError),
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// Why a transfer (or a signed answer) was cut short.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("cannot encode a message")]
    Encode(#[source] hickory_server::proto::ProtoError),
    #[error(transparent)]
    Sign(#[from] tsig::SignError),
    #[error("the client is gone")]
    Send(#[source] hickory_server::net::NetError),
    #[error("the policy's name index is damaged")]
    IndexDamaged,
    #[error("cannot read journal {path}")]
    Journal {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The RPZ primary. Shared by all requests; [`RpzPrimary::update`] swaps
/// in a new list.
pub struct RpzPrimary {
    settings: Arc<ZoneSettings>,
    origin: LowerName,
    allow: Vec<IpNet>,
    signer: Option<TSigner>,
    current: ArcSwap<Policy>,
    journal: Journal,
    notifier: Option<Notifier>,
}

impl std::fmt::Debug for RpzPrimary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpzPrimary")
            .field("zone", &self.settings.origin_text)
            .field("serial", &self.serial())
            .finish_non_exhaustive()
    }
}

/// What a transfer sends.
enum Plan {
    Axfr,
    Ixfr(Vec<(u32, u32, std::path::PathBuf)>),
}

impl RpzPrimary {
    /// Build the primary for `config`'s `[rpz]` section serving `policy`.
    /// NOTIFY tasks start when `token` is given (they need a runtime).
    pub fn new(
        config: &Config,
        policy: Arc<Policy>,
        token: Option<CancellationToken>,
    ) -> Result<RpzPrimary, RpzError> {
        let settings = ZoneSettings::from_config(config)?;
        let rpz = config.rpz.as_ref().ok_or(ZoneError::NotConfigured)?;
        let signer = match &rpz.tsig_key_file {
            Some(path) => Some(TsigKey::load(path)?.signer().map_err(RpzError::Signer)?),
            None => None,
        };
        let serial = ZoneSettings::serial_of(policy.serial());
        let notifier = match token {
            Some(token) if !rpz.notify.is_empty() => Some(Notifier::spawn(
                &rpz.notify,
                settings.clone(),
                signer.clone(),
                serial,
                token,
            )),
            _ => None,
        };
        Ok(RpzPrimary {
            origin: LowerName::new(&settings.origin),
            settings: Arc::new(settings),
            allow: rpz.allow_transfer.clone(),
            signer,
            current: ArcSwap::new(policy),
            journal: Journal::new(&config.state_dir),
            notifier,
        })
    }

    pub fn settings(&self) -> &ZoneSettings {
        &self.settings
    }

    /// The zone serial served now.
    pub fn serial(&self) -> u32 {
        ZoneSettings::serial_of(self.current.load().serial())
    }

    /// A new list was loaded: write the journal step, serve it, and NOTIFY.
    /// The new list is served even when the journal cannot be written
    /// (secondaries then get a full transfer).
    pub fn update(&self, new: Arc<Policy>) -> Result<Option<Step>, JournalError> {
        let old = self.current.load_full();
        let step = self.journal.record(&old, &new, &self.settings);
        let serial = ZoneSettings::serial_of(new.serial());
        let changed = serial != ZoneSettings::serial_of(old.serial());
        self.current.store(new);
        if changed {
            tracing::info!(zone = %self.settings.origin_text, serial, "RPZ serial changed");
            if let Some(n) = &self.notifier {
                n.changed(serial);
            }
        }
        step
    }

    /// Whether a request is this primary's to answer: any name in the zone,
    /// and every transfer request (a transfer of another zone is refused).
    pub fn claims(&self, request: &Request) -> bool {
        request.queries.queries().iter().any(|q| {
            self.origin.zone_of(q.name())
                || matches!(q.query_type(), RecordType::AXFR | RecordType::IXFR)
        })
    }

    /// Whether a question for `name` is about the RPZ zone.
    pub fn claims_name(&self, name: &LowerName) -> bool {
        self.origin.zone_of(name)
    }

    pub fn allowed(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.allow.iter().any(|n| n.contains(&ip))
    }

    /// Answer a request that [`RpzPrimary::claims`].
    pub async fn handle<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let src = request.src();
        let edns = request.edns.as_ref().map(|_| {
            let mut e = Edns::new();
            e.set_max_payload(1232);
            e
        });
        let reply = |code: ResponseCode| {
            MessageResponseBuilder::new(&request.queries, edns.as_ref())
                .error_msg(&request.metadata, code)
        };
        let info = match request.request_info() {
            Ok(info) if request.metadata.op_code == OpCode::Query => info,
            Ok(_) => return send(&mut response_handle, reply(ResponseCode::NotImp), request).await,
            Err(_) => {
                return send(&mut response_handle, reply(ResponseCode::FormErr), request).await;
            }
        };
        let qtype = info.query.query_type();
        let qname = info.query.name().clone();
        let now = crate::clock::unix_now();

        let auth = tsig::check_request(
            self.signer.as_ref(),
            request.signature.as_deref(),
            request.as_slice(),
            request.metadata.id,
            now,
        );
        let request_mac = match auth {
            RequestAuth::Bad(record) => {
                tracing::warn!(client = %src.ip(), zone = %self.settings.origin_text, "RPZ request with a bad TSIG signature");
                let mut msg = reply(ResponseCode::NotAuth);
                msg.set_signature(record);
                return send(&mut response_handle, msg, request).await;
            }
            RequestAuth::Signed { mac } => Some(mac),
            RequestAuth::Unsigned => None,
        };
        let transfer = matches!(qtype, RecordType::AXFR | RecordType::IXFR);
        let refuse = |why: &'static str| {
            tracing::info!(client = %src.ip(), name = %qname, ?qtype, why, "RPZ request refused");
        };
        if qname != self.origin || !self.allowed(src.ip()) {
            refuse(if qname != self.origin {
                "not the zone apex, or not this zone"
            } else {
                "client not in rpz.allow_transfer"
            });
            return send(&mut response_handle, reply(ResponseCode::Refused), request).await;
        }
        if transfer && self.signer.is_some() && request_mac.is_none() {
            refuse("transfer without TSIG");
            return send(&mut response_handle, reply(ResponseCode::Refused), request).await;
        }
        let policy = self.current.load_full();
        let serial = ZoneSettings::serial_of(policy.serial());
        let mut chain = match (&self.signer, request_mac) {
            (Some(s), Some(mac)) => {
                Some(ChainSigner::new(s.clone(), request.metadata.id, mac, now))
            }
            _ => None,
        };
        let tcp = request.protocol().is_stream();
        let plan = match qtype {
            RecordType::SOA => None,
            RecordType::AXFR if tcp => Some(Plan::Axfr),
            RecordType::IXFR => {
                let client = request.authorities.iter().find_map(|r| match &r.data {
                    RData::SOA(soa) => Some(soa.serial),
                    _ => None,
                });
                match client {
                    // Up to date (or ahead): the SOA alone says so.
                    Some(c) if journal::serial_cmp(c, serial) != std::cmp::Ordering::Less => None,
                    // Over UDP the SOA alone tells the client to use TCP.
                    _ if !tcp => None,
                    Some(c) => match self.journal.chain(c, serial) {
                        Some(steps) => Some(Plan::Ixfr(steps)),
                        None => Some(Plan::Axfr),
                    },
                    None => Some(Plan::Axfr),
                }
            }
            _ => {
                refuse("only SOA, AXFR and IXFR are answered for the RPZ zone");
                return send(&mut response_handle, reply(ResponseCode::Refused), request).await;
            }
        };
        let mut meta = Metadata::response_from_request(&request.metadata);
        meta.authoritative = true;
        let Some(plan) = plan else {
            // A single SOA.
            let soa = [self.settings.soa(serial)];
            let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
            let mut msg = builder.build(meta, soa.iter(), &[], &[], &[]);
            if let Some(c) = chain.as_mut() {
                let unsigned = MessageResponseBuilder::new(&request.queries, edns.as_ref()).build(
                    meta,
                    soa.iter(),
                    &[],
                    &[],
                    &[],
                );
                match encode(unsigned).and_then(|b| Ok(c.sign(&b)?)) {
                    Ok(sig) => msg.set_signature(sig),
                    Err(error) => {
                        tracing::error!(error = %crate::error::error_chain(&error), "cannot sign an RPZ answer");
                        return send(&mut response_handle, reply(ResponseCode::ServFail), request)
                            .await;
                    }
                }
            }
            return send(&mut response_handle, msg, request).await;
        };

        // A transfer: it runs in its own task (see the module comment).
        let queries_bytes = request.queries.as_bytes().to_vec();
        let query_count = request.queries.len();
        let settings = self.settings.clone();
        let client = src.ip();
        let kind = match plan {
            Plan::Axfr => "AXFR",
            Plan::Ixfr(_) => "IXFR",
        };
        tracing::info!(%client, zone = %settings.origin_text, serial, kind, requested = ?qtype, "RPZ transfer started");
        tokio::spawn(async move {
            let Ok(queries) = Queries::read(&mut BinDecoder::new(&queries_bytes), query_count)
            else {
                return;
            };
            let mut out = Out {
                rh: response_handle,
                queries,
                meta,
                chain,
                messages: 0,
                records: 0,
            };
            let result = match plan {
                Plan::Axfr => axfr(&policy, &settings, serial, &mut out).await,
                Plan::Ixfr(steps) => ixfr(&settings, serial, &steps, &mut out).await,
            };
            match result {
                Ok(()) => {
                    tracing::info!(%client, serial, kind, messages = out.messages, records = out.records, "RPZ transfer done")
                }
                Err(error) => {
                    tracing::warn!(%client, serial, kind, messages = out.messages, error = %crate::error::error_chain(&error), "RPZ transfer aborted")
                }
            }
        });
        let mut header = wire::header_only(&request.metadata, ResponseCode::NoError);
        header.metadata.authoritative = true;
        ResponseInfo::from(header)
    }
}

/// Send one response; on a send failure report SERVFAIL for the logs.
async fn send<'a, R: ResponseHandler>(
    rh: &mut R,
    msg: message_response!('_, 'a),
    request: &Request,
) -> ResponseInfo {
    match rh.send_response(msg).await {
        Ok(info) => info,
        Err(error) => {
            tracing::debug!(%error, "RPZ answer not sent");
            wire::header_only_info(&request.metadata, ResponseCode::ServFail)
        }
    }
}

/// The wire form of a response, for TSIG.
fn encode<'a>(msg: message_response!('_, 'a)) -> Result<Vec<u8>, TransferError> {
    wire::encode(msg, u16::MAX, TARGET_BYTES + 1024)
        .map(|(bytes, _)| bytes)
        .map_err(TransferError::Encode)
}

/// The sending end of a transfer.
struct Out<R> {
    rh: R,
    queries: Queries,
    meta: Metadata,
    chain: Option<ChainSigner>,
    messages: u64,
    records: u64,
}

impl<R: ResponseHandler> Out<R> {
    async fn send(&mut self, records: &[Record]) -> Result<(), TransferError> {
        let signature: Option<Box<Record<TSIG>>> = match self.chain.as_mut() {
            Some(c) => {
                let unsigned = MessageResponseBuilder::new(&self.queries, None).build(
                    self.meta,
                    records.iter(),
                    &[],
                    &[],
                    &[],
                );
                Some(c.sign(&encode(unsigned)?)?)
            }
            None => None,
        };
        let mut msg = MessageResponseBuilder::new(&self.queries, None).build(
            self.meta,
            records.iter(),
            &[],
            &[],
            &[],
        );
        if let Some(sig) = signature {
            msg.set_signature(sig);
        }
        // Waits while the connection's queue is full; fails once the
        // connection is gone (closed, or dropped for not reading).
        self.rh
            .send_response(msg)
            .await
            .map_err(TransferError::Send)?;
        self.messages += 1;
        self.records += records.len() as u64;
        Ok(())
    }
}

/// A message being filled.
struct Batch {
    records: Vec<Record>,
    bytes: usize,
}

impl Batch {
    fn new() -> Self {
        Batch {
            records: Vec::with_capacity(MAX_RECORDS + 8),
            bytes: 0,
        }
    }
    fn full(&self) -> bool {
        self.records.len() >= MAX_RECORDS || self.bytes >= TARGET_BYTES
    }
    fn push(&mut self, r: Record) {
        // Uncompressed size: an upper bound of what it takes on the wire.
        self.bytes += r.name.len() + 12 + rdata_len(&r);
        self.records.push(r);
    }
    fn push_trigger(&mut self, settings: &ZoneSettings, t: &Trigger) {
        let before = self.records.len();
        zone::push_records(settings, t, &mut self.records);
        for i in before..self.records.len() {
            let r = &self.records[i];
            self.bytes += r.name.len() + 12 + rdata_len(r);
        }
    }
    async fn flush_if_full<R: ResponseHandler>(
        &mut self,
        out: &mut Out<R>,
    ) -> Result<(), TransferError> {
        if self.full() {
            out.send(&self.records).await?;
            self.records.clear();
            self.bytes = 0;
        }
        Ok(())
    }
}

fn rdata_len(r: &Record) -> usize {
    match &r.data {
        RData::CNAME(c) => c.0.len() + 2,
        RData::AAAA(_) => 16,
        RData::A(_) => 4,
        RData::SOA(s) => s.mname.len() + s.rname.len() + 24,
        RData::NS(n) => n.0.len() + 2,
        RData::TXT(t) => t.txt_data.iter().map(|s| s.len() + 1).sum(),
        _ => 64,
    }
}

async fn axfr<R: ResponseHandler>(
    policy: &Policy,
    settings: &ZoneSettings,
    serial: u32,
    out: &mut Out<R>,
) -> Result<(), TransferError> {
    let mut batch = Batch::new();
    batch.push(settings.soa(serial));
    batch.push(settings.ns_record());
    let mut walk = Triggers::new(policy, settings, Section::All);
    while let Some(t) = walk.next() {
        batch.push_trigger(settings, t);
        batch.flush_if_full(out).await?;
    }
    if walk.index_damaged {
        // Never end a transfer that lacks names with the closing SOA: the
        // secondary would take it for the whole zone.
        return Err(TransferError::IndexDamaged);
    }
    batch.push(settings.soa(serial));
    out.send(&batch.records).await
}

async fn ixfr<R: ResponseHandler>(
    settings: &ZoneSettings,
    serial: u32,
    steps: &[(u32, u32, std::path::PathBuf)],
    out: &mut Out<R>,
) -> Result<(), TransferError> {
    let mut batch = Batch::new();
    batch.push(settings.soa(serial));
    for (from, to, path) in steps {
        for (added, soa) in [(false, *from), (true, *to)] {
            batch.push(settings.soa(soa));
            let changes =
                journal::read_changes(path, added).map_err(|source| TransferError::Journal {
                    path: path.clone(),
                    source,
                })?;
            for t in changes {
                batch.push_trigger(settings, &t);
                batch.flush_if_full(out).await?;
            }
        }
    }
    batch.push(settings.soa(serial));
    out.send(&batch.records).await
}
