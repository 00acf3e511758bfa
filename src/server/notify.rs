//! sd_notify(3) by hand: tell systemd (`Type=notify`) when schild is ready,
//! reloading and stopping.
//!
//! systemd names a unix datagram socket in `$NOTIFY_SOCKET`: a file path,
//! or `@name` for a socket in the abstract namespace. Every message is one
//! datagram of `KEY=value` lines. Without the variable (started by hand, in
//! a container, or by `Type=exec`) every call does nothing. A failed send is
//! logged once and otherwise ignored: it must never stop the resolver.
//!
//! `READY=1` goes out once the list is loaded (or known to be missing) and
//! every listener, the admin listener included, is open: `/ready` answers
//! 200 from then on whenever a list is loaded. A schild without a list
//! (`policy.fail_closed = false`) still says READY=1, since it does answer,
//! and says UNFILTERED in `STATUS=` (`systemctl status schild`); holding
//! READY back would make systemd kill it at `TimeoutStartSec`, which is
//! fail-closed by another name.

use std::sync::Arc;
#[cfg(unix)]
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwapOption;

use crate::policy::Policy;

/// The service manager's notification socket, if there is one.
pub struct Notifier {
    #[cfg(unix)]
    target: Option<(
        std::os::unix::net::UnixDatagram,
        std::os::unix::net::SocketAddr,
    )>,
    policy: Arc<ArcSwapOption<Policy>>,
    #[cfg(unix)]
    warned: AtomicBool,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET`; `policy` is what `STATUS=` describes.
    pub fn from_env(policy: Arc<ArcSwapOption<Policy>>) -> Notifier {
        let n = Notifier::disabled(policy);
        match std::env::var_os("NOTIFY_SOCKET") {
            Some(path) if !path.is_empty() => n.with_socket(&path),
            _ => n,
        }
    }

    fn disabled(policy: Arc<ArcSwapOption<Policy>>) -> Notifier {
        Notifier {
            #[cfg(unix)]
            target: None,
            policy,
            #[cfg(unix)]
            warned: AtomicBool::new(false),
        }
    }

    #[cfg(unix)]
    fn with_socket(mut self, path: &std::ffi::OsStr) -> Notifier {
        match socket(path) {
            Ok(t) => self.target = Some(t),
            Err(e) => tracing::warn!(
                socket = %path.to_string_lossy(),
                error = %e,
                "NOTIFY_SOCKET cannot be used; systemd will not hear that schild is ready"
            ),
        }
        self
    }

    #[cfg(not(unix))]
    fn with_socket(self, _path: &std::ffi::OsStr) -> Notifier {
        self
    }

    /// Serving (at start-up, and after a reload).
    pub fn ready(&self) {
        self.send(&format!("READY=1\nSTATUS={}", self.status()));
    }

    /// A reload (SIGHUP) has begun; [`Notifier::ready`] ends it.
    pub fn reloading(&self) {
        self.send("RELOADING=1\nSTATUS=refreshing the feeds");
    }

    /// SIGTERM: draining the queries in flight.
    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping: draining queries in flight");
    }

    fn status(&self) -> String {
        match self.policy.load().as_deref() {
            Some(p) => format!(
                "serving; list serial {}, {} names, {} addresses",
                p.serial(),
                p.name_count(),
                p.meta().ip_triggers.len()
            ),
            None => "serving UNFILTERED: no list loaded".to_string(),
        }
    }

    #[cfg(unix)]
    fn send(&self, message: &str) {
        let Some((sock, addr)) = &self.target else {
            return;
        };
        if let Err(e) = sock.send_to_addr(message.as_bytes(), addr)
            && !self.warned.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(error = %e, "cannot notify systemd");
        }
    }

    #[cfg(not(unix))]
    fn send(&self, _message: &str) {}
}

/// An unbound datagram socket and the address `path` names.
#[cfg(unix)]
fn socket(
    path: &std::ffi::OsStr,
) -> std::io::Result<(
    std::os::unix::net::UnixDatagram,
    std::os::unix::net::SocketAddr,
)> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let bytes = path.as_bytes();
    let addr = match bytes.split_first() {
        Some((b'/', _)) => SocketAddr::from_pathname(path)?,
        #[cfg(any(target_os = "linux", target_os = "android"))]
        Some((b'@', name)) => {
            #[cfg(target_os = "android")]
            use std::os::android::net::SocketAddrExt;
            #[cfg(target_os = "linux")]
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name)?
        }
        _ => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "not an absolute path or an @abstract socket name",
            ));
        }
    };
    Ok((UnixDatagram::unbound()?, addr))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;
    use std::time::Duration;

    fn recv(sock: &UnixDatagram) -> String {
        sock.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn sends_each_state_to_a_socket_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let sock = UnixDatagram::bind(&path).expect("bind");
        let n = Notifier::disabled(Arc::new(ArcSwapOption::empty())).with_socket(path.as_os_str());
        n.ready();
        assert_eq!(
            recv(&sock),
            "READY=1\nSTATUS=serving UNFILTERED: no list loaded"
        );
        n.reloading();
        assert!(recv(&sock).starts_with("RELOADING=1\n"));
        n.stopping();
        assert!(recv(&sock).starts_with("STOPPING=1\n"));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn sends_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("schild-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .expect("abstract address");
        let sock = UnixDatagram::bind_addr(&addr).expect("bind");
        let n = Notifier::disabled(Arc::new(ArcSwapOption::empty()))
            .with_socket(std::ffi::OsStr::new(&format!("@{name}")));
        n.stopping();
        assert!(recv(&sock).starts_with("STOPPING=1\n"));
    }

    #[test]
    fn a_relative_path_or_a_gone_socket_is_not_an_error() {
        let n = Notifier::disabled(Arc::new(ArcSwapOption::empty()))
            .with_socket(std::ffi::OsStr::new("relative/notify"));
        n.ready();
        let dir = tempfile::tempdir().expect("tempdir");
        let n = Notifier::disabled(Arc::new(ArcSwapOption::empty()))
            .with_socket(dir.path().join("gone").as_os_str());
        n.ready();
        n.ready();
        assert!(n.warned.load(Ordering::Relaxed));
    }
}
