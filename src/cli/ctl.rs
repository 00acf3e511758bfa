//! `schild ctl`: talk to a running schild through its admin listener.
//!
//! The address (`admin.listen`) and the token (`admin.token_file`) come
//! from the same configuration file `serve` reads. One HTTP/1.1 request
//! per command, `Connection: close`; no TLS (the admin listener has none).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

use crate::config::Config;
use crate::exit;

/// What `ctl` is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Status,
    /// Flush one name (`subtree`: and everything below it), or all.
    Flush {
        name: Option<String>,
        subtree: bool,
    },
    Refresh {
        feed: String,
        accept_shrink: bool,
    },
}

#[derive(Debug, thiserror::Error)]
enum CtlError {
    #[error("cannot reach the admin listener at {addr} (is schild running?)")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("talking to the admin listener at {addr} failed")]
    Io {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the admin listener at {addr} did not answer HTTP")]
    NotHttp { addr: SocketAddr },
}

/// Where to connect: `admin.listen`, with a wildcard address replaced by
/// loopback of the same family.
fn target(config: &Config) -> SocketAddr {
    let mut a = config.admin.listen;
    if a.ip().is_unspecified() {
        a.set_ip(match a.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    a
}

/// Percent-encode a query value (RFC 3986 unreserved characters stay).
fn encode(v: &str) -> String {
    url::form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

/// One request: (status, body).
fn request(
    config: &Config,
    method: &str,
    path: &str,
    timeout: Duration,
) -> Result<(u16, String), CtlError> {
    let addr = target(config);
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|source| CtlError::Connect { addr, source })?;
    let io = |source| CtlError::Io { addr, source };
    s.set_read_timeout(Some(timeout)).map_err(io)?;
    s.set_write_timeout(Some(Duration::from_secs(10)))
        .map_err(io)?;
    let auth = config
        .admin
        .token
        .as_ref()
        .map(|t| format!("Authorization: Bearer {}\r\n", t.expose()))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: schild\r\nUser-Agent: schild-ctl/{}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    s.write_all(req.as_bytes()).map_err(io)?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).map_err(io)?;
    let text = String::from_utf8_lossy(&resp);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or(CtlError::NotHttp { addr })?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or(CtlError::NotHttp { addr })?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

/// The body of a chunked response.
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// Run one `ctl` command; the process exit code.
pub fn run(config: &Config, cmd: &Command) -> i32 {
    let (method, path, timeout) = match cmd {
        Command::Status => ("GET", "/status".to_string(), Duration::from_secs(30)),
        Command::Flush {
            name: None,
            subtree: _,
        } => ("POST", "/flush?all=1".to_string(), Duration::from_secs(60)),
        Command::Flush {
            name: Some(n),
            subtree,
        } => (
            "POST",
            format!(
                "/flush?name={}{}",
                encode(n),
                if *subtree { "&subtree=1" } else { "" }
            ),
            Duration::from_secs(60),
        ),
        // A refresh is a fetch and a compile: give it time.
        Command::Refresh {
            feed,
            accept_shrink,
        } => (
            "POST",
            format!(
                "/refresh?feed={}{}",
                encode(feed),
                if *accept_shrink {
                    "&accept_shrink=1"
                } else {
                    ""
                }
            ),
            Duration::from_secs(900),
        ),
    };
    let (status, body) = match request(config, method, &path, timeout) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("schild: {}", crate::error::error_chain(&e));
            return exit::UNAVAILABLE;
        }
    };
    if status == 401 {
        eprintln!(
            "schild: the admin listener wants a token: {}",
            if config.admin.token.is_some() {
                "the one in admin.token_file is not it"
            } else {
                "set admin.token_file in this configuration"
            }
        );
        return exit::FAILURE;
    }
    if !(200..300).contains(&status) {
        eprint!("schild: HTTP {status}: {body}");
        if !body.ends_with('\n') {
            eprintln!();
        }
        return exit::FAILURE;
    }
    if *cmd == Command::Status {
        return match serde_json::from_str::<serde_json::Value>(&body) {
            Ok(v) => {
                let mut out = std::io::stdout().lock();
                let _ = print_status(&mut out, &v);
                exit::OK
            }
            Err(e) => {
                eprintln!("schild: /status did not answer JSON: {e}");
                exit::FAILURE
            }
        };
    }
    print!("{body}");
    exit::OK
}

/// `N s`, `N min`, `N h` or `N d`.
fn age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 2 * 3600 => format!("{} min", s / 60),
        s if s < 2 * 86_400 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86_400),
    }
}

fn print_status(out: &mut impl Write, v: &serde_json::Value) -> std::io::Result<()> {
    let u = |k: &str| v.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
    let listening = v.get("listening").and_then(serde_json::Value::as_bool) == Some(true);
    if v.get("loaded").and_then(serde_json::Value::as_bool) != Some(true) {
        writeln!(
            out,
            "schild: {}, NO LIST LOADED: answers are NOT filtered",
            if listening { "serving" } else { "not serving" }
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "schild: {}, list loaded: serial {}, {} names, {} addresses, compiled {} ago",
        if listening { "serving" } else { "not serving" },
        u("serial"),
        u("names"),
        u("ips"),
        age(u("age_secs"))
    )?;
    for f in v
        .get("feeds")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
    {
        let s = |k: &str| f.get(k).and_then(serde_json::Value::as_str).unwrap_or("");
        let n = |k: &str| f.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
        let when = f
            .get("age_secs")
            .and_then(serde_json::Value::as_u64)
            .map(age)
            .unwrap_or_else(|| "-".into());
        let state = match s("status") {
            "fresh" => "fresh".to_string(),
            "cached" => format!("FAILED, using its last good copy: {}", s("error")),
            _ => format!("FAILED, no copy: {}", s("error")),
        };
        writeln!(
            out,
            "feed {} ({}): {} names, {} addresses, age {when}; {state}",
            s("name"),
            s("kind"),
            n("names"),
            n("ips")
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(
            dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            "hello world"
        );
        assert_eq!(dechunk("zz\r\n"), "");
    }

    #[test]
    fn ages_read_at_a_glance() {
        assert_eq!(age(5), "5 s");
        assert_eq!(age(600), "10 min");
        assert_eq!(age(3 * 3600), "3 h");
        assert_eq!(age(3 * 86_400), "3 d");
    }
}
