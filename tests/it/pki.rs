//! The hospital's own PKI: a CA made in the test with Debian's `openssl`,
//! a server certificate for the test MISP on 127.0.0.1 and a client
//! certificate for mutual TLS; then feeds and sightings over HTTPS that
//! trust the CA only where the config says so (`ca_file`,
//! `client_cert_file`, `client_key_file`, per feed or under `[http]`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::dns;
use crate::harness::{Schild, have, wait_until};
use crate::misp_server::MispServer;

/// A test CA and the certificates it signed, in a temporary folder.
pub struct Pki {
    pub dir: tempfile::TempDir,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pki {
    /// `None` when openssl is missing outside CI (in CI that fails).
    pub fn make() -> Option<Pki> {
        if !have("openssl") {
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut ca = vec!["req", "-x509"];
        ca.extend(ec);
        ca.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=Test Hospital CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(d, &ca);
        for (name, usage) in [
            (
                "server",
                "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
            ),
            ("client", "extendedKeyUsage=clientAuth\n"),
        ] {
            std::fs::write(
                d.join(format!("{name}.ext")),
                format!("{usage}basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"),
            )
            .expect("write ext");
            let (key, csr, pem, ext) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.pem"),
                format!("{name}.ext"),
            );
            let subj = format!("/CN=schild-test-{name}");
            let mut req = vec!["req", "-new"];
            req.extend(ec);
            req.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
            openssl(d, &req);
            openssl(
                d,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-out",
                    &pem,
                    "-days",
                    "2",
                    "-extfile",
                    &ext,
                ],
            );
        }
        Some(Pki { dir })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The test MISP's TLS setup: its certificate, and (if `mutual`) a
    /// client certificate from the test CA required of every client.
    pub fn server_config(&self, mutual: bool) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(self.path("server.pem"))
                .expect("server.pem")
                .map(|c| c.expect("certificate"))
                .collect();
        let key = PrivateKeyDer::from_pem_file(self.path("server.key")).expect("server.key");
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("TLS versions");
        let builder = if mutual {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(self.path("ca.pem")).expect("ca.pem") {
                roots.add(c.expect("ca")).expect("add ca");
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        Arc::new(builder.with_single_cert(chain, key).expect("server cert"))
    }
}

fn run(config: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_schild"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("SCHILD_LOG", "warn")
        .output()
        .expect("run schild")
}

/// A misp-api feed `zdn` on `misp` with `extra` keys, in a folder with its key.
fn feed_config(dir: &Path, misp: &MispServer, head: &str, extra: &str) -> PathBuf {
    std::fs::write(dir.join("zdn.key"), misp.key()).expect("key");
    let path = dir.join("schild.toml");
    std::fs::write(
        &path,
        format!(
            "state_dir = \"state\"\n{head}\n[[feed]]\nname = \"zdn\"\ntype = \"misp-api\"\nlocation = \"{}\"\napi_key_file = \"zdn.key\"\npublished = false\ntimeout_secs = 5\nretries = 0\n{extra}\n",
            misp.url("")
        ),
    )
    .expect("config");
    path
}

#[test]
fn a_feed_trusts_the_hospital_ca_only_where_the_config_names_it() {
    // `have` says why when it skips (and fails under CI=true).
    let Some(pki) = Pki::make() else { return };
    let misp = MispServer::start_tls(pki.server_config(false));
    assert!(misp.url("").starts_with("https://127.0.0.1:"));
    let ca = pki.path("ca.pem");

    // The system's store does not know the hospital's CA: a clear failure,
    // nothing compiled.
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = feed_config(dir.path(), &misp, "", "");
    let out = run(&cfg, &["compile"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an unknown CA must not be trusted");
    assert!(
        err.contains("certificate") && err.to_lowercase().contains("issuer"),
        "the error says why: {err}"
    );
    assert!(misp.requests_to("/attributes/restSearch").is_empty());

    // With the feed's ca_file it pulls, and the list blocks.
    let cfg = feed_config(
        dir.path(),
        &misp,
        "",
        &format!("ca_file = \"{}\"", ca.display()),
    );
    let out = run(&cfg, &["compile"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        run(&cfg, &["check", "movieultimate.com"]).status.code(),
        Some(1)
    );

    // The same CA as the [http] default for every client.
    let cfg = feed_config(
        dir.path(),
        &misp,
        &format!("[http]\nca_file = \"{}\"\n", ca.display()),
        "",
    );
    let out = run(&cfg, &["compile"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A ca_file that is not a certificate: check-config names key and file.
    std::fs::write(dir.path().join("junk.pem"), "not a certificate\n").expect("junk");
    let cfg = feed_config(dir.path(), &misp, "", "ca_file = \"junk.pem\"");
    let out = run(&cfg, &["check-config"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains("feed \"zdn\"") && err.contains("junk.pem"),
        "{err}"
    );
    // A client certificate without its key is a config error.
    let cfg = feed_config(dir.path(), &misp, "", "client_cert_file = \"c.pem\"");
    let out = run(&cfg, &["check-config"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("feed \"zdn\".client_key_file"), "{err}");
}

#[test]
fn mutual_tls_feed_and_sightings_use_the_client_certificate() {
    // `have` says why when it skips (and fails under CI=true).
    let Some(pki) = Pki::make() else { return };
    let misp = MispServer::start_tls(pki.server_config(true));
    let http = format!(
        "[http]\nca_file = \"{}\"\nclient_cert_file = \"{}\"\nclient_key_file = \"{}\"\n",
        pki.path("ca.pem").display(),
        pki.path("client.pem").display(),
        pki.path("client.key").display(),
    );

    // Without a client certificate the MISP refuses the handshake.
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = feed_config(
        dir.path(),
        &misp,
        "",
        &format!("ca_file = \"{}\"", pki.path("ca.pem").display()),
    );
    let out = run(&cfg, &["compile"]);
    assert!(!out.status.success(), "no client certificate, no feed");
    assert!(misp.requests_to("/attributes/restSearch").is_empty());

    // With it (from [http]), serve pulls the feed, blocks, and the sighting
    // reaches the MISP over the same mutual TLS.
    let config = format!(
        "[resolver]\nmode = \"forward\"\nupstreams = [\"127.0.0.1:9\"]\ndnssec = false\ntimeout_secs = 1\n\n{http}\n[[feed]]\nname = \"zdn\"\ntype = \"misp-api\"\nlocation = \"{}\"\napi_key_file = \"zdn.key\"\npublished = false\nreport_sightings = true\nretries = 0\n",
        misp.url("")
    );
    let key = misp.key();
    let s = Schild::start(&config, &[("zdn.key", key.as_str())]);
    let m = dns::udp(s.dns, &dns::query("www.movieultimate.com.", RecordType::A));
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let got = wait_until(
        "the sighting over mutual TLS",
        Duration::from_secs(15),
        || {
            let v = misp.sightings();
            (!v.is_empty()).then_some(v)
        },
    );
    assert_eq!(got[0].kind, "0");
}
