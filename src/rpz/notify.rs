//! NOTIFY (RFC 1996): tell every secondary that the zone changed.
//!
//! One task per configured address watches the current serial. On a change
//! it sends a NOTIFY over UDP (signed when a TSIG key is configured) and
//! waits for the answer, retrying with a doubling pause until the secondary
//! acknowledges, a newer serial replaces the one being announced, or the
//! attempts run out (the secondary then still finds the change at its next
//! SOA refresh).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_server::proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_server::proto::rr::{DNSClass, RecordType, TSigner};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::zone::ZoneSettings;
use crate::clock::unix_now;

/// Attempts per change and address.
pub const MAX_ATTEMPTS: u32 = 8;
/// Wait for the first answer; doubled after every miss, up to the cap.
const FIRST_WAIT: Duration = Duration::from_millis(1000);
const MAX_WAIT: Duration = Duration::from_secs(30);

/// Handle to the NOTIFY tasks; dropping it stops nothing, the token does.
#[derive(Debug, Clone)]
pub struct Notifier {
    tx: watch::Sender<u32>,
}

impl Notifier {
    /// Start one task per address. `serial` is the zone's serial now;
    /// secondaries are only told of later ones.
    pub fn spawn(
        targets: &[SocketAddr],
        settings: ZoneSettings,
        signer: Option<TSigner>,
        serial: u32,
        token: CancellationToken,
    ) -> Notifier {
        let (tx, rx) = watch::channel(serial);
        for &target in targets {
            let mut rx = rx.clone();
            rx.mark_unchanged();
            let settings = settings.clone();
            let signer = signer.clone();
            let token = token.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = token.cancelled() => return,
                        changed = rx.changed() => if changed.is_err() { return },
                    }
                    let serial = *rx.borrow_and_update();
                    tokio::select! {
                        _ = token.cancelled() => return,
                        // A newer serial interrupts the announcement of this one.
                        _ = announce(target, &settings, signer.as_ref(), serial) => {}
                        _ = rx.changed() => {
                            // Put the change back so the loop sees it.
                            rx.mark_changed();
                        }
                    }
                }
            });
        }
        Notifier { tx }
    }

    /// The zone now has this serial: tell everyone.
    pub fn changed(&self, serial: u32) {
        self.tx.send_replace(serial);
    }
}

/// Send NOTIFYs to one address until it answers. Returns whether it did.
pub async fn announce(
    target: SocketAddr,
    settings: &ZoneSettings,
    signer: Option<&TSigner>,
    serial: u32,
) -> bool {
    let bind: SocketAddr = if target.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = match UdpSocket::bind(bind).await {
        Ok(s) => s,
        Err(error) => {
            tracing::warn!(%target, %error, "cannot open a socket for NOTIFY");
            return false;
        }
    };
    let mut wait = FIRST_WAIT;
    for attempt in 1..=MAX_ATTEMPTS {
        let id: u16 = rand::random();
        let bytes = match notify_message(id, settings, signer, serial) {
            Ok(b) => b,
            Err(error) => {
                tracing::error!(%target, %error, "cannot build a NOTIFY message");
                return false;
            }
        };
        if let Err(error) = socket.send_to(&bytes, target).await {
            tracing::debug!(%target, %error, attempt, "NOTIFY not sent");
        } else if let Some(rcode) = await_answer(&socket, target, id, wait).await {
            if rcode == ResponseCode::NoError {
                tracing::info!(%target, serial, attempt, "NOTIFY acknowledged");
                return true;
            }
            tracing::warn!(%target, serial, %rcode, attempt, "NOTIFY answered with an error");
        }
        tokio::time::sleep(wait / 2).await;
        wait = (wait * 2).min(MAX_WAIT);
    }
    tracing::warn!(%target, serial, attempts = MAX_ATTEMPTS, "NOTIFY never acknowledged; the secondary will find the change at its next refresh");
    false
}

/// The answer's response code, if one arrives within `wait`.
async fn await_answer(
    socket: &UdpSocket,
    target: SocketAddr,
    id: u16,
    wait: Duration,
) -> Option<ResponseCode> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut buf = [0u8; 4096];
    loop {
        let (n, from) = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        if from != target {
            continue;
        }
        let Ok(msg) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        if msg.metadata.id == id
            && msg.metadata.message_type == MessageType::Response
            && msg.metadata.op_code == OpCode::Notify
        {
            return Some(msg.metadata.response_code);
        }
    }
}

fn notify_message(
    id: u16,
    settings: &ZoneSettings,
    signer: Option<&TSigner>,
    serial: u32,
) -> Result<Vec<u8>, String> {
    let mut msg = Message::query();
    msg.metadata.id = id;
    msg.metadata.op_code = OpCode::Notify;
    msg.metadata.authoritative = true;
    let mut q = Query::query(settings.origin.clone(), RecordType::SOA);
    q.set_query_class(DNSClass::IN);
    msg.add_query(q);
    // The new SOA as a hint (RFC 1996 §3.7).
    msg.add_answer(settings.soa(serial));
    if let Some(signer) = signer {
        msg.finalize(signer, unix_now())
            .map_err(|e| e.to_string())?;
    }
    msg.to_vec().map_err(|e| e.to_string())
}
