//! Batched UDP for the receive loop (Linux): up to [`BATCH`] datagrams per
//! `recvmmsg(2)` and their fast-path answers out with one `sendmmsg(2)`.
//!
//! Under load a receive queue holds many queries at once (dnsperf keeps
//! 200 outstanding); reading and answering them one system call each made
//! the kernel's entry and exit a good part of a blocked answer's cost
//! (benches/RESULTS.md, session 10). The answers are sent to the address
//! their query came from, so the `sockaddr` the kernel filled in on receive
//! is handed back to it as is.
//!
//! Neither `nix` nor `quinn-udp` is used: `quinn-udp` batches sends only as
//! GSO segments to one destination (each DNS answer has its own), and the
//! two calls need no more than what `libc` already declares.

#![allow(unsafe_code)]

use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// Datagrams per receive call (Unbound reads up to 100 per wake-up, one
/// call each).
pub const BATCH: usize = 32;

/// Room per datagram: the largest there is, so that no query is cut short
/// and then answered as if it were whole.
const SLOT: usize = 65_535;

/// The receive buffers, the senders' addresses, and an answer buffer per
/// slot. Holds no pointers between calls: the kernel's headers are built on
/// the stack for each call.
pub struct Batch {
    /// `BATCH` slots of `SLOT` octets (allocated zeroed, so the pages the
    /// kernel never writes are never resident).
    bufs: Vec<u8>,
    names: Vec<libc::sockaddr_storage>,
    name_lens: Vec<libc::socklen_t>,
    lens: Vec<usize>,
    /// The answer to the datagram in the same slot, when there is one.
    out: Vec<Vec<u8>>,
}

impl Default for Batch {
    fn default() -> Batch {
        Batch {
            bufs: vec![0u8; BATCH * SLOT],
            // SAFETY: sockaddr_storage is plain data; all zeroes is valid.
            names: vec![unsafe { mem::zeroed() }; BATCH],
            name_lens: vec![0; BATCH],
            lens: vec![0; BATCH],
            out: (0..BATCH).map(|_| Vec::with_capacity(1232)).collect(),
        }
    }
}

impl Batch {
    /// Receive what is queued, up to [`BATCH`] datagrams, without waiting:
    /// `WouldBlock` when there is nothing.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        // SAFETY: iovec and mmsghdr are plain data; all zeroes is valid
        // (null pointers, zero lengths).
        let mut iovs: [libc::iovec; BATCH] = unsafe { mem::zeroed() };
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { mem::zeroed() };
        let slots = self.bufs.chunks_exact_mut(SLOT);
        let room = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        for (((buf, iov), hdr), name) in slots.zip(&mut iovs).zip(&mut hdrs).zip(&mut self.names) {
            point(hdr, iov, buf, name, room);
        }
        // SAFETY: every header points at a live buffer of the length it
        // gives and at a sockaddr_storage, all borrowed mutably for the
        // call; the kernel writes at most BATCH headers.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        let n = done(n)?;
        for ((hdr, len), name_len) in hdrs[..n]
            .iter()
            .zip(&mut self.lens)
            .zip(&mut self.name_lens)
        {
            *len = hdr.msg_len as usize;
            *name_len = hdr.msg_hdr.msg_namelen;
        }
        Ok(n)
    }

    /// Datagram `i` of the last receive, its sender (`None` for an
    /// address family other than IPv4 or IPv6), and the buffer for its
    /// answer.
    pub fn slot(&mut self, i: usize) -> (&[u8], Option<SocketAddr>, &mut Vec<u8>) {
        let msg = &self.bufs[i * SLOT..i * SLOT + self.lens[i].min(SLOT)];
        let src = socket_addr(&self.names[i], self.name_lens[i]);
        (msg, src, &mut self.out[i])
    }

    /// The answer written for slot `i`.
    pub fn answer(&self, i: usize) -> &[u8] {
        &self.out[i]
    }

    /// Send the answers of `slots` (slot numbers of the last receive), each
    /// to the sender of its query, without waiting: how many went, or the
    /// error of the first (`WouldBlock` when the socket has no room).
    pub fn send(&mut self, fd: RawFd, slots: &[usize]) -> io::Result<usize> {
        let count = slots.len().min(BATCH);
        // SAFETY: as in `recv`.
        let mut iovs: [libc::iovec; BATCH] = unsafe { mem::zeroed() };
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { mem::zeroed() };
        for ((&i, iov), hdr) in slots[..count].iter().zip(&mut iovs).zip(&mut hdrs) {
            point(
                hdr,
                iov,
                &mut self.out[i],
                &mut self.names[i],
                self.name_lens[i],
            );
        }
        // SAFETY: the first `count` headers point at live answer buffers of
        // the lengths they give and at the addresses the kernel filled in;
        // sendmmsg only reads them.
        let n = unsafe {
            libc::sendmmsg(
                fd,
                hdrs.as_mut_ptr(),
                count as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        done(n)
    }
}

/// Point `hdr` at one buffer (through `iov`) and one address of
/// `name_len` octets.
fn point(
    hdr: &mut libc::mmsghdr,
    iov: &mut libc::iovec,
    buf: &mut [u8],
    name: &mut libc::sockaddr_storage,
    name_len: libc::socklen_t,
) {
    *iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let h = &mut hdr.msg_hdr;
    h.msg_name = (name as *mut libc::sockaddr_storage).cast();
    h.msg_namelen = name_len;
    h.msg_iov = iov;
    h.msg_iovlen = 1;
}

/// A `recvmmsg`/`sendmmsg` result: the count of messages, or the error.
fn done(n: libc::c_int) -> io::Result<usize> {
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// The socket address in a `sockaddr_storage` the kernel filled in.
fn socket_addr(s: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match i32::from(s.ss_family) {
        libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in,
            // which it is large and aligned enough for.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    /// One receive, once anything has arrived (within half a second).
    fn received(batch: &mut Batch, server: &UdpSocket) -> usize {
        for _ in 0..100 {
            match batch.recv(server.as_raw_fd()) {
                Ok(n) => return n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                Err(e) => panic!("{e}"),
            }
        }
        panic!("nothing arrived");
    }

    /// Datagrams from two senders come back as they were sent, each from
    /// its own address, and the answers reach the right sender.
    #[test]
    fn receives_and_answers_a_batch() {
        let server = UdpSocket::bind("127.0.0.1:0").expect("loopback UDP");
        let addr = server.local_addr().expect("loopback UDP");
        let a = UdpSocket::bind("127.0.0.1:0").expect("loopback UDP");
        let b = UdpSocket::bind("127.0.0.1:0").expect("loopback UDP");
        a.send_to(b"one", addr).expect("loopback UDP");
        b.send_to(b"two", addr).expect("loopback UDP");
        a.send_to(&[7u8; 4000], addr).expect("loopback UDP");
        let mut batch = Batch::default();
        assert_eq!(received(&mut batch, &server), 3);
        let (msg, src, out) = batch.slot(0);
        assert_eq!(
            (msg, src),
            (&b"one"[..], Some(a.local_addr().expect("loopback UDP")))
        );
        *out = b"to a".to_vec();
        let (msg, src, out) = batch.slot(1);
        assert_eq!(
            (msg, src),
            (&b"two"[..], Some(b.local_addr().expect("loopback UDP")))
        );
        *out = b"to b".to_vec();
        assert_eq!(batch.slot(2).0, &[7u8; 4000][..]);
        assert_eq!(
            batch
                .send(server.as_raw_fd(), &[1, 0])
                .expect("loopback UDP"),
            2
        );
        let mut buf = [0u8; 16];
        let (n, from) = a.recv_from(&mut buf).expect("loopback UDP");
        assert_eq!((&buf[..n], from), (&b"to a"[..], addr));
        let (n, _) = b.recv_from(&mut buf).expect("loopback UDP");
        assert_eq!(&buf[..n], b"to b");
        // Nothing left: WouldBlock, not a stale datagram.
        assert_eq!(
            batch
                .recv(server.as_raw_fd())
                .expect_err("the queue is empty")
                .kind(),
            io::ErrorKind::WouldBlock
        );
    }

    #[test]
    fn ipv6_senders_keep_their_address() {
        let Ok(server) = UdpSocket::bind("[::1]:0") else {
            eprintln!("skipped: no IPv6 loopback on this machine");
            return;
        };
        let c = UdpSocket::bind("[::1]:0").expect("loopback UDP");
        c.send_to(b"six", server.local_addr().expect("loopback UDP"))
            .expect("loopback UDP");
        let mut batch = Batch::default();
        assert_eq!(received(&mut batch, &server), 1);
        let (msg, src, _) = batch.slot(0);
        assert_eq!(
            (msg, src),
            (&b"six"[..], Some(c.local_addr().expect("loopback UDP")))
        );
    }
}
