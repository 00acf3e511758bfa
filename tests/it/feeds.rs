//! Feed readers against a MISP / TAXII server that behaves as documented,
//! over real sockets: what we send, what we keep, and what happens when
//! the server misbehaves.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use schild::config::Config;
use schild::error::error_chain;
use schild::feeds::{FeedError, Puller};
use schild::pipeline;
use schild::policy::{FetchStatus, Policy};
use serde_json::json;

use crate::misp_server::{AUTH_FAILED, COLLECTION, FIXTURES, Fault, MispServer, TAXII_MEDIA};

const SCHILD: &str = env!("CARGO_BIN_EXE_schild");

/// A tempdir with a config file whose state_dir is inside it.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        Setup {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Write `schild.toml` with these `[[feed]]` tables and load it.
    fn config(&self, feeds: &str) -> Config {
        let text = format!("state_dir = \"state\"\n{feeds}\n");
        std::fs::write(self.path("schild.toml"), text).expect("write config");
        Config::load(&self.path("schild.toml")).expect("valid config")
    }

    fn key_file(&self, key: &str) -> PathBuf {
        let p = self.path("misp.key");
        std::fs::write(&p, format!("{key}\n")).expect("key");
        p
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn compile(config: &Config) -> Result<pipeline::CompileOutcome, pipeline::PipelineError> {
    rt().block_on(pipeline::compile(config, &Puller::new(&config.state_dir)))
}

fn pull_error(config: &Config) -> FeedError {
    let feed = &config.feeds[0];
    rt().block_on(Puller::new(&config.state_dir).pull(feed))
        .expect_err("the pull fails")
}

fn schild_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn policy(config: &Config) -> Policy {
    Policy::load(&config.artifact_path()).expect("artifact loads")
}

fn blocked(p: &Policy, name: &str) -> bool {
    p.lookup_str(name).hit().is_some()
}

fn misp_api_feed(server: &MispServer, key_file: &Path, extra: &str) -> String {
    // Tests are quick by default: a short timeout and no retries, unless
    // the test sets them.
    let mut defaults = String::new();
    if !extra.contains("timeout_secs") {
        defaults.push_str("timeout_secs = 5\n");
    }
    if !extra.contains("retries") {
        defaults.push_str("retries = 0\n");
    }
    format!(
        "[[feed]]\nname = \"zdn\"\ntype = \"misp-api\"\nlocation = \"{}\"\napi_key_file = \"{}\"\n{defaults}{extra}\n",
        server.url(""),
        key_file.display()
    )
}

// ---------------------------------------------------------------- misp-api

#[test]
fn misp_api_sends_what_misp_documents_and_keeps_provenance() {
    let server = MispServer::start();
    let s = Setup::new();
    let key = s.key_file(&server.key());
    let config = s.config(&misp_api_feed(
        &server,
        &key,
        "tags_include = [\"tlp:white\"]\ntags_exclude = [\"tlp:red\"]\npublished = false",
    ));
    let out = compile(&config).expect("compiles");
    assert_eq!(out.reports[0].fetch, FetchStatus::Fresh);

    let reqs = server.requests_to("/attributes/restSearch");
    assert_eq!(reqs.len(), 1, "one page is enough for the fixtures");
    let r = &reqs[0];
    assert_eq!(r.method, "POST");
    assert_eq!(
        r.header("authorization"),
        Some(server.key().as_str()),
        "raw key, no scheme"
    );
    assert_eq!(r.header("accept"), Some("application/json"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(
        r.header("user-agent")
            .is_some_and(|u| u.starts_with("schild/"))
    );
    let body = r.json();
    assert_eq!(body["returnFormat"], "json");
    assert_eq!(
        body["type"],
        json!(["domain", "hostname", "domain|ip", "url", "ip-dst", "ip-src"])
    );
    assert_eq!(body["to_ids"], 1);
    assert!(
        body.get("published").is_none(),
        "published = false sends no filter"
    );
    assert_eq!(
        body["tags"],
        json!({"OR": ["tlp:white"], "NOT": ["tlp:red"]})
    );
    assert_eq!(body["enforceWarninglist"], 1);
    assert_eq!(body["includeEventUuid"], 1);
    assert_eq!(body["includeEventTags"], 1);
    assert_eq!(body["limit"], 5000);
    assert_eq!(body["page"], 1);
    assert!(
        body.get("timestamp").is_none(),
        "the first pull is a full pull"
    );

    // Sednit event (tlp:white): a domain and an object's domain-ip pair.
    let p = policy(&config);
    assert!(blocked(&p, "movieultimate.com"));
    assert!(
        blocked(&p, "sub.movieultimate.com"),
        "domain covers subdomains"
    );
    assert!(blocked(&p, "servicecdp.com"), "object attributes count");
    assert!(p.lookup_ip("87.236.211.182".parse().expect("ip")).is_some());
    // The Ursnif event is not tlp:white: filtered by the server.
    assert!(!blocked(&p, "ooiasjdnqjwbeasdasd.com"));

    let hit = p.lookup_str("movieultimate.com").hit().expect("hit");
    let prov = p.provenance_of(hit.set).next().expect("provenance");
    assert_eq!(
        prov.attribute_uuid.as_deref(),
        Some("5a3c3045-ab0c-4d38-8efe-459002de0b81")
    );
    let ev = p.event(prov).expect("event");
    assert_eq!(ev.uuid, "5a3c2fcd-8328-42bb-a95e-4f4402de0b81");
    assert_eq!(
        ev.info,
        "OSINT - Sednit update: How Fancy Bear Spent the Year"
    );
    assert!(ev.tags.contains(&"tlp:white".to_string()), "{:?}", ev.tags);
    assert!(
        !prov.tags.contains(&"tlp:white".to_string()),
        "event tags stay on the event"
    );
    assert_eq!(
        p.meta().events.iter().filter(|e| e.uuid == ev.uuid).count(),
        1,
        "one event entry per event uuid"
    );
}

#[test]
fn misp_api_enforce_warninglist_is_asked_for_and_can_be_turned_off() {
    let server = MispServer::start();
    {
        // An analyst put a URL shortener in an event: MISP's url-shortener
        // warninglist catches it when the client asks.
        let mut st = server.state.lock();
        let mut row = st.rows[0].clone();
        row.attribute["uuid"] = json!("00000000-2222-4222-8333-444444444444");
        row.attribute["value"] = json!("bit.ly");
        st.rows.push(row);
    }
    let s = Setup::new();
    let key = s.key_file(&server.key());
    let config = s.config(&misp_api_feed(&server, &key, ""));
    compile(&config).expect("compiles");
    assert!(!blocked(&policy(&config), "bit.ly"));
    assert!(blocked(&policy(&config), "ooiasjdnqjwbeasdasd.com"));

    let s = Setup::new();
    let key = s.key_file(&server.key());
    let config = s.config(&misp_api_feed(&server, &key, "enforce_warninglist = false"));
    compile(&config).expect("compiles");
    let body = server.requests().pop().expect("request").json();
    assert_eq!(body["enforceWarninglist"], 0);
    assert!(blocked(&policy(&config), "bit.ly"));
}

#[test]
fn misp_api_pages_until_a_short_page() {
    let server = MispServer::start();
    let s = Setup::new();
    let key = s.key_file(&server.key());
    let config = s.config(&misp_api_feed(
        &server,
        &key,
        "page_limit = 4\npublished = false",
    ));
    compile(&config).expect("compiles");
    let reqs = server.requests_to("/attributes/restSearch");
    let pages: Vec<u64> = reqs
        .iter()
        .map(|r| r.json()["page"].as_u64().unwrap_or(0))
        .collect();
    assert!(pages.len() > 2, "{pages:?}");
    assert_eq!(pages, (1..=pages.len() as u64).collect::<Vec<_>>());
    assert!(reqs.iter().all(|r| r.json()["limit"] == 4));

    // The same set as one big page.
    let s2 = Setup::new();
    let key2 = s2.key_file(&server.key());
    let config2 = s2.config(&misp_api_feed(&server, &key2, "published = false"));
    compile(&config2).expect("compiles");
    let (a, b) = (policy(&config), policy(&config2));
    assert_eq!(a.name_count(), b.name_count());
    assert_eq!(a.meta().ip_triggers.len(), b.meta().ip_triggers.len());
    assert!(a.name_count() > 10);
}

#[test]
fn misp_api_incremental_pulls_merge_by_uuid() {
    let server = MispServer::start();
    let s = Setup::new();
    let key = s.key_file(&server.key());
    let config = s.config(&misp_api_feed(&server, &key, "published = false"));
    compile(&config).expect("full pull");
    assert!(blocked(&policy(&config), "meteost.com"));
    assert!(blocked(&policy(&config), "faststoragefiles.org"));
    server.clear_requests();

    // MISP changes: one IOC deleted, one no longer to_ids, one new.
    let now = schild_now();
    {
        let mut st = server.state.lock();
        for r in st.rows.iter_mut() {
            match r.attribute["value"].as_str() {
                Some("meteost.com") => {
                    r.attribute["deleted"] = json!(true);
                    r.attribute["timestamp"] = json!(now.to_string());
                }
                Some("faststoragefiles.org") => {
                    r.attribute["to_ids"] = json!(false);
                    r.attribute["timestamp"] = json!(now.to_string());
                }
                _ => {}
            }
        }
        let mut new = st.rows[0].clone();
        new.attribute["uuid"] = json!("00000000-1111-4222-8333-444444444444");
        new.attribute["value"] = json!("fresh-ioc.example");
        new.attribute["type"] = json!("hostname");
        new.attribute["to_ids"] = json!(true);
        new.attribute["timestamp"] = json!(now.to_string());
        st.rows.push(new);
    }
    compile(&config).expect("incremental pull");
    let reqs = server.requests_to("/attributes/restSearch");
    let body = reqs[0].json();
    let since = body["timestamp"].as_u64().expect("timestamp sent");
    assert!(since <= now && since + 3600 > now, "{since} vs {now}");
    assert_eq!(body["deleted"], json!([0, 1]));
    let p = policy(&config);
    assert!(!blocked(&p, "meteost.com"), "deleted in MISP: gone");
    assert!(!blocked(&p, "faststoragefiles.org"), "to_ids off: gone");
    assert!(blocked(&p, "fresh-ioc.example"), "new IOC merged");
    assert!(
        blocked(&p, "movieultimate.com"),
        "unchanged IOCs kept from the set"
    );
    assert!(
        body["page"] == 1 && reqs.len() == 1,
        "only the changes were fetched"
    );
}

#[test]
fn misp_api_full_refresh_zero_always_pulls_everything() {
    let server = MispServer::start();
    let s = Setup::new();
    let key = s.key_file(&server.key());
    let config = s.config(&misp_api_feed(&server, &key, "full_refresh_secs = 0"));
    compile(&config).expect("first");
    compile(&config).expect("second");
    let reqs = server.requests_to("/attributes/restSearch");
    assert_eq!(reqs.len(), 2);
    assert!(reqs.iter().all(|r| r.json().get("timestamp").is_none()));
}

#[test]
fn misp_api_wrong_key_says_so_without_the_key() {
    let server = MispServer::start();
    let s = Setup::new();
    let wrong = "ffffffffffffffffffffffffffffffffdeadbeef";
    let key = s.key_file(wrong);
    let config = s.config(&misp_api_feed(&server, &key, "retries = 3"));
    let e = pull_error(&config);
    let text = error_chain(&e);
    assert!(
        matches!(e, FeedError::Forbidden { status: 403, .. }),
        "{e:?}"
    );
    assert!(text.contains("API key"), "{text}");
    assert!(text.contains("/attributes/restSearch"), "{text}");
    assert!(!text.contains(wrong), "{text}");
    assert!(!format!("{e:?}").contains(wrong));
    assert_eq!(
        server.requests_to("/attributes/restSearch").len(),
        1,
        "a 403 is not retried"
    );
    // The server really answered as MISP does.
    let last = server.requests().pop().expect("request");
    assert_eq!(last.header("authorization"), Some(wrong));
    let _ = AUTH_FAILED;

    // Through the binary: the key is in no output either.
    let out = Command::new(SCHILD)
        .args(["compile", "--config"])
        .arg(s.path("schild.toml"))
        .output()
        .expect("run schild");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("API key"), "{all}");
    assert!(!all.contains(wrong), "{all}");
}

// ---------------------------------------------------------------- faults

fn fault_config(s: &Setup, server: &MispServer, extra: &str) -> Config {
    let key = s.key_file(&server.key());
    s.config(&misp_api_feed(server, &key, extra))
}

#[test]
fn server_errors_are_retried_then_reported() {
    let server = MispServer::start();
    server.set_fault(Fault::Status500);
    let s = Setup::new();
    let config = fault_config(&s, &server, "retries = 2");
    let e = pull_error(&config);
    assert!(matches!(e, FeedError::Status { status: 500, .. }), "{e:?}");
    assert!(e.to_string().contains("HTTP 500"), "{e}");
    assert_eq!(server.requests().len(), 3, "first try + 2 retries");
}

#[test]
fn a_feed_that_times_out_gives_a_timeout_error() {
    let server = MispServer::start();
    server.set_fault(Fault::Slow(Duration::from_secs(5)));
    let s = Setup::new();
    let config = fault_config(&s, &server, "timeout_secs = 1");
    let started = std::time::Instant::now();
    let e = pull_error(&config);
    assert!(matches!(e, FeedError::Timeout { secs: 1, .. }), "{e:?}");
    assert!(e.to_string().contains("timed out"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the timeout cut it short"
    );
}

#[test]
fn a_reset_connection_is_an_http_error() {
    let server = MispServer::start();
    server.set_fault(Fault::Reset);
    let s = Setup::new();
    let config = fault_config(&s, &server, "");
    let e = pull_error(&config);
    assert!(matches!(e, FeedError::Http { .. }), "{e:?}");
    assert!(
        e.to_string()
            .contains(&server.url("/attributes/restSearch")),
        "{e}"
    );
}

#[test]
fn a_1_gib_response_is_cut_at_the_cap() {
    let server = MispServer::start();
    server.set_fault(Fault::Huge(1 << 30));
    let s = Setup::new();
    let config = fault_config(&s, &server, "max_bytes = 1000000\ntimeout_secs = 30");
    let e = pull_error(&config);
    assert!(
        matches!(
            e,
            FeedError::TooLarge {
                limit: 1_000_000,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("max_bytes"), "{e}");
}

#[test]
fn malformed_json_names_the_url_and_what_was_expected() {
    let server = MispServer::start();
    server.set_fault(Fault::Malformed);
    let s = Setup::new();
    let config = fault_config(&s, &server, "");
    let e = pull_error(&config);
    let text = e.to_string();
    assert!(matches!(e, FeedError::Format { .. }), "{e:?}");
    assert!(text.contains("/attributes/restSearch"), "{text}");
    assert!(text.contains("expected a restSearch answer"), "{text}");
}

#[test]
fn wrong_field_types_are_refused_or_absorbed() {
    let server = MispServer::start();
    {
        let mut st = server.state.lock();
        // MISP spells to_ids as "1"/"0" at times, and timestamps as numbers.
        st.rows[0].attribute["to_ids"] = json!("1");
        st.rows[0].attribute["timestamp"] = json!(1533306058);
    }
    let s = Setup::new();
    let config = fault_config(&s, &server, "");
    compile(&config).expect("lenient where MISP varies");
    assert!(blocked(&policy(&config), "ooiasjdnqjwbeasdasd.com"));

    // A value that is a list: unusable, the whole pull is refused.
    {
        let mut st = server.state.lock();
        st.rows[1].attribute["value"] = json!(["eqowiesajenqweasd.com"]);
        // Changed now, so the incremental pull sees it.
        st.rows[1].attribute["timestamp"] = json!(schild_now().to_string());
    }
    let e = pull_error(&config);
    let text = e.to_string();
    assert!(
        text.contains("invalid type") && text.contains("page 1"),
        "{text}"
    );
    // ... and the last good set is still what a compile uses.
    let out = compile(&config).expect("falls back");
    assert!(matches!(out.reports[0].fetch, FetchStatus::Cached { .. }));
    assert!(blocked(&policy(&config), "eqowiesajenqweasd.com"));
}

// ---------------------------------------------------------------- misp-feed

fn misp_feed(location: &str) -> String {
    format!(
        "[[feed]]\nname = \"circl\"\ntype = \"misp-feed\"\nlocation = \"{location}\"\ntimeout_secs = 5\nretries = 0\n"
    )
}

#[test]
fn misp_feed_over_http_fetches_only_what_changed() {
    let server = MispServer::start();
    let s = Setup::new();
    let config = s.config(&misp_feed(&server.url("/feed/")));
    let out = compile(&config).expect("compiles");
    let p = policy(&config);
    // Old format (57153590…): hostnames with to_ids true are in, false are not.
    let r = &out.reports[0];
    assert!(r.names > 0 && r.ips > 0, "{r:?}");
    assert!(r.not_to_ids > 0, "{r:?}");
    // New format (5a3c2fcd…): object attributes count.
    assert!(blocked(&p, "servicecdp.com"));
    assert!(p.lookup_ip("87.236.211.182".parse().expect("ip")).is_some());
    assert_eq!(p.meta().events.len(), 4);
    assert_eq!(server.requests().len(), 5, "manifest + 4 events");

    // Nothing changed: a conditional GET of the manifest, answered 304.
    server.clear_requests();
    compile(&config).expect("compiles");
    let reqs = server.requests();
    assert_eq!(
        reqs.len(),
        1,
        "{:?}",
        reqs.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    assert!(reqs[0].header("if-none-match").is_some());
    assert_eq!(policy(&config).name_count(), p.name_count());

    // One event's timestamp moves and another event leaves the manifest.
    server.clear_requests();
    {
        let mut st = server.state.lock();
        let mut m: serde_json::Value =
            serde_json::from_slice(&st.feed["manifest.json"]).expect("manifest");
        m["5a0a9aa9-23a4-4607-b6df-41a9950d210f"]["timestamp"] = json!(1999999999);
        m.as_object_mut()
            .expect("object")
            .remove("5a3c2fcd-8328-42bb-a95e-4f4402de0b81");
        st.feed
            .insert("manifest.json".into(), m.to_string().into_bytes());
    }
    compile(&config).expect("compiles");
    let paths: Vec<String> = server.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        paths,
        vec![
            "/feed/manifest.json".to_string(),
            "/feed/5a0a9aa9-23a4-4607-b6df-41a9950d210f.json".to_string()
        ]
    );
    let p = policy(&config);
    assert!(
        !blocked(&p, "servicecdp.com"),
        "the removed event's IOCs are gone"
    );
    assert_eq!(p.meta().events.len(), 3);
    assert!(
        !s.path("state/feeds/circl/events/5a3c2fcd-8328-42bb-a95e-4f4402de0b81.json")
            .exists(),
        "its cached copy is gone too"
    );
}

#[test]
fn misp_feed_from_a_local_folder_and_a_broken_event() {
    let s = Setup::new();
    let folder = s.path("feed");
    std::fs::create_dir(&folder).expect("mkdir");
    for entry in std::fs::read_dir(Path::new(FIXTURES).join("misp-feed")).expect("fixtures") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), folder.join(entry.file_name())).expect("copy");
    }
    let config = s.config(&misp_feed(&folder.display().to_string()));
    compile(&config).expect("compiles");
    let p = policy(&config);
    assert!(blocked(&p, "servicecdp.com"));
    let names = p.name_count();

    // A broken event: the pull fails naming the file, the last good copy is used.
    let bad = folder.join("5a0a9aa9-23a4-4607-b6df-41a9950d210f.json");
    std::fs::write(&bad, br#"{"Event": {"uuid": "5a0a9aa9-23a4-4607-b6df-41a9950d210f", "Attribute": [{"to_ids": "perhaps"}]}}"#)
        .expect("write");
    let e = pull_error(&config);
    let text = e.to_string();
    assert!(text.contains(&bad.display().to_string()), "{text}");
    assert!(text.contains("perhaps"), "{text}");
    let out = compile(&config).expect("falls back");
    assert!(matches!(out.reports[0].fetch, FetchStatus::Cached { .. }));
    assert_eq!(policy(&config).name_count(), names);
}

#[test]
fn a_protected_misp_feed_gets_the_key_on_every_request() {
    let server = MispServer::start();
    server.protect_feed();
    let s = Setup::new();

    // No key: MISP's 403, and the error says what to configure.
    let config = s.config(&misp_feed(&server.url("/feed/")));
    let e = pull_error(&config);
    assert!(
        matches!(e, FeedError::Forbidden { status: 403, .. }),
        "{e:?}"
    );
    assert!(error_chain(&e).contains("api_key_file"), "{e}");

    // A wrong key: refused, and the key is in no message.
    let wrong = "ffffffffffffffffffffffffffffffffdeadbeef";
    let key = s.key_file(wrong);
    let feed = |key: &Path| {
        format!(
            "{}api_key_file = \"{}\"\n",
            misp_feed(&server.url("/feed/")),
            key.display()
        )
    };
    let config = s.config(&feed(&key));
    let e = pull_error(&config);
    assert!(
        matches!(e, FeedError::Forbidden { status: 403, .. }),
        "{e:?}"
    );
    let text = error_chain(&e);
    assert!(text.contains("API key"), "{text}");
    assert!(!text.contains(wrong) && !format!("{e:?}").contains(wrong));

    // The right key: the manifest and every event are fetched with it.
    let good = server.key();
    let key = s.key_file(&good);
    let config = s.config(&feed(&key));
    server.clear_requests();
    compile(&config).expect("compiles");
    assert!(blocked(&policy(&config), "servicecdp.com"));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 5, "manifest + 4 events");
    assert!(reqs.iter().any(|r| r.path == "/feed/manifest.json"));
    for r in &reqs {
        assert_eq!(r.header("authorization"), Some(good.as_str()), "{}", r.path);
    }
    // The conditional re-fetch carries it too.
    server.clear_requests();
    compile(&config).expect("compiles");
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert!(reqs[0].header("if-none-match").is_some());
    assert_eq!(reqs[0].header("authorization"), Some(good.as_str()));

    // Through the binary at its most verbose: the key is never logged.
    let config = s.path("schild.toml");
    let trace = [("SCHILD_LOG", "trace")];
    let (code, all) = schild_env(&["compile"], &config, &trace);
    assert_eq!(code, 0, "{all}");
    assert!(!all.contains(&good), "{all}");
    std::fs::write(&key, format!("{wrong}\n")).expect("key");
    let (_, all) = schild_env(&["compile"], &config, &trace);
    assert!(all.contains("403"), "{all}");
    assert!(!all.contains(wrong), "{all}");
}

// ---------------------------------------------------------------- STIX / TAXII

#[test]
fn stix_bundle_from_a_file_and_over_http() {
    let server = MispServer::start();
    let s = Setup::new();
    let file = Path::new(FIXTURES).join("stix21/misp_attributes_as_stix21_bundle.json");
    let feeds = format!(
        "[[feed]]\nname = \"file\"\ntype = \"stix\"\nlocation = \"{}\"\n\n[[feed]]\nname = \"web\"\ntype = \"stix\"\nlocation = \"{}\"\nretries = 0\n",
        file.display(),
        server.url("/stix/bundle.json")
    );
    let config = s.config(&feeds);
    let out = compile(&config).expect("compiles");
    for r in &out.reports {
        assert_eq!(r.names, 2, "circl.lu as domain and from domain|ip: {r:?}");
        assert_eq!(r.ips, 1, "{r:?}");
        assert_eq!(
            r.unsupported.get("stix-pattern: file:name"),
            Some(&1),
            "{r:?}"
        );
    }
    let p = policy(&config);
    let hit = p
        .lookup_str("www.circl.lu")
        .hit()
        .expect("domain covers subdomains");
    let prov = p.provenance_of(hit.set).next().expect("prov");
    assert!(prov.attribute_uuid.is_some());
    let ev = p.event(prov).expect("event");
    assert_eq!(ev.uuid, "a31158d6-4ac2-485d-8bd2-e05f2f0aa1a1");
    assert!(p.lookup_ip("149.13.33.14".parse().expect("ip")).is_some());

    // Conditional GET on the second pull.
    server.clear_requests();
    compile(&config).expect("compiles");
    let r = server.requests_to("/stix/bundle.json");
    assert_eq!(r.len(), 1);
    assert!(r[0].header("if-none-match").is_some());
    assert_eq!(policy(&config).name_count(), p.name_count());
}

fn taxii_feed(server: &MispServer, extra: &str) -> String {
    format!(
        "[[feed]]\nname = \"zdn-taxii\"\ntype = \"taxii\"\nlocation = \"{}\"\npage_limit = 3\nretries = 0\n{extra}\n",
        server.url(&format!("/api1/collections/{COLLECTION}/"))
    )
}

#[test]
fn taxii_collection_paging_and_added_after() {
    let server = MispServer::start();
    server.state.lock().taxii_keys = vec!["taxii-token-1".into()];
    let s = Setup::new();
    std::fs::write(s.path("taxii.key"), "taxii-token-1").expect("key");
    let config = s.config(&taxii_feed(&server, "api_key_file = \"taxii.key\""));
    compile(&config).expect("compiles");
    let reqs = server.requests_to(&format!("/api1/collections/{COLLECTION}/objects/"));
    assert!(reqs.len() >= 2, "follows next: {}", reqs.len());
    for r in &reqs {
        assert_eq!(r.header("accept"), Some(TAXII_MEDIA));
        assert_eq!(r.header("authorization"), Some("Bearer taxii-token-1"));
    }
    assert!(
        reqs[1]
            .query
            .as_deref()
            .is_some_and(|q| q.contains("next="))
    );
    let p = policy(&config);
    assert!(blocked(&p, "circl.lu"));
    assert!(blocked(&p, "paypa1.banking.com"), "url indicator's host");
    assert!(!blocked(&p, "banking.com"), "a url blocks its host only");
    let ev = {
        let hit = p.lookup_str("circl.lu").hit().expect("hit");
        let prov = p.provenance_of(hit.set).next().expect("prov").clone();
        p.event(&prov).expect("event").clone()
    };
    assert_eq!(ev.uuid, COLLECTION);

    // A new indicator is added; the next pull asks only for what is newer.
    server.clear_requests();
    server.state.lock().taxii.push(crate::misp_server::TaxiiObject {
        date_added: "2024-02-01T00:00:00.000Z".into(),
        object: json!({"type": "indicator", "spec_version": "2.1",
            "id": "indicator--6f0a2ad3-1111-4b8c-9e5a-0d8c0f0c0c01",
            "created": "2024-02-01T00:00:00.000Z", "modified": "2024-02-01T00:00:00.000Z",
            "pattern": "[network-traffic:dst_ref.type = 'ipv4-addr' AND network-traffic:dst_ref.value = '198.51.100.77']",
            "pattern_type": "stix", "valid_from": "2024-02-01T00:00:00Z"}),
    });
    compile(&config).expect("compiles");
    let reqs = server.requests_to(&format!("/api1/collections/{COLLECTION}/objects/"));
    assert_eq!(reqs.len(), 1);
    let q = reqs[0].query.clone().unwrap_or_default();
    assert!(q.contains("added_after=2024-01-01T00%3A00%3A"), "{q}");
    let p = policy(&config);
    assert!(p.lookup_ip("198.51.100.77".parse().expect("ip")).is_some());
    assert!(blocked(&p, "circl.lu"), "earlier objects kept");

    // A wrong token: refused with a clear error.
    std::fs::write(s.path("taxii.key"), "wrong").expect("key");
    let config = s.config(&taxii_feed(&server, "api_key_file = \"taxii.key\""));
    let e = pull_error(&config);
    assert!(
        matches!(e, FeedError::Forbidden { status: 401, .. }),
        "{e:?}"
    );
}

// ---------------------------------------------------------------- end to end

fn schild(args: &[&str], config: &Path) -> (i32, String) {
    schild_env(args, config, &[])
}

/// `schild ARGS[0] --config CONFIG ARGS[1..]` with extra environment: the
/// exit code and everything it printed.
fn schild_env(args: &[&str], config: &Path, env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(SCHILD)
        .args(&args[..1])
        .arg("--config")
        .arg(config)
        .args(&args[1..])
        .envs(env.iter().copied())
        .output()
        .expect("run schild");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn end_to_end_compile_check_and_last_good_copy() {
    let server = MispServer::start();
    // An attribute tag, as an analyst would add one in MISP.
    for r in server.state.lock().rows.iter_mut() {
        if r.attribute["value"] == "movieultimate.com" {
            r.attribute["Tag"] = json!([{"id": "618", "name": "osint:certainty=\"90\"", "colour": "#007cd6", "exportable": true}]);
        }
    }
    let s = Setup::new();
    let key = s.key_file(&server.key());
    s.config(&misp_api_feed(&server, &key, "published = false"));
    let cfg = s.path("schild.toml");

    let (code, out) = schild(&["compile"], &cfg);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains(&server.key()), "{out}");

    let (code, out) = schild(&["check", "movieultimate.com"], &cfg);
    assert_eq!(code, 1, "blocked: {out}");
    for needle in [
        "movieultimate.com",
        "BLOCKED",
        "feed zdn",
        "5a3c2fcd-8328-42bb-a95e-4f4402de0b81",
        "OSINT - Sednit update: How Fancy Bear Spent the Year",
        "5a3c3045-ab0c-4d38-8efe-459002de0b81",
        "tlp:white",
        "tags: osint:certainty=\"90\"",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
    let (code, out) = schild(&["check", "example.org"], &cfg);
    assert_eq!(code, 0, "{out}");

    // MISP breaks: the compile reports it, the last good set still blocks.
    server.set_fault(Fault::Status500);
    let (code, out) = schild(&["compile"], &cfg);
    assert_eq!(code, 1, "a failed feed is reported: {out}");
    assert!(out.contains("FAILED, using copy"), "{out}");
    let (code, out) = schild(&["check", "movieultimate.com"], &cfg);
    assert_eq!(code, 1, "still blocked: {out}");
    let (code, out) = schild(&["stats"], &cfg);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("feed zdn: FAILED, using copy"), "{out}");
    assert!(out.contains("HTTP 500"), "{out}");
}

// ---------------------------------------------------------------- plain lists

#[test]
fn an_unchanged_list_is_confirmed_not_rewritten_and_its_age_follows() {
    use std::os::unix::fs::MetadataExt;
    let s = Setup::new();
    let list = s.path("iocs.txt");
    std::fs::write(&list, "a.malware.example\nb.malware.example\n").expect("list");
    let config = s.config(&format!(
        "[[feed]]\nname = \"local\"\ntype = \"domains\"\nlocation = \"{}\"\n",
        list.display()
    ));
    compile(&config).expect("first compile");
    let kept = config.state_dir.join("feeds/local/list");
    let before = std::fs::metadata(&kept).expect("kept copy");
    // Kept a day ago, as far as its time says.
    let day_ago = std::time::SystemTime::now() - Duration::from_secs(86_400);
    std::fs::File::options()
        .write(true)
        .open(&kept)
        .and_then(|f| f.set_modified(day_ago))
        .expect("age the copy");

    // The same list again: the copy in place is the one kept before (not
    // a new file renamed over it), and it is marked as confirmed now.
    let out = compile(&config).expect("second compile");
    assert_eq!(out.reports[0].fetch, FetchStatus::Fresh);
    assert!(blocked(&policy(&config), "b.malware.example"));
    let after = std::fs::metadata(&kept).expect("kept copy");
    assert_eq!(
        after.ino(),
        before.ino(),
        "an unchanged list is not rewritten"
    );
    let confirmed = after.mtime() as u64;
    assert!(
        confirmed + 60 >= schild_now(),
        "confirmed now, not a day ago"
    );

    // The feed breaks: the fallback says when the copy was last confirmed.
    std::fs::remove_file(&list).expect("remove");
    let out = compile(&config).expect("falls back");
    match &out.reports[0].fetch {
        FetchStatus::Cached { cached_at, .. } => assert_eq!(*cached_at, confirmed),
        other => panic!("expected the kept copy, got {other:?}"),
    }
    assert!(blocked(&policy(&config), "a.malware.example"));

    // A changed list replaces the copy.
    std::fs::write(&list, "c.malware.example\n").expect("list");
    let out = compile(&config).expect("changed list");
    assert_eq!(out.reports[0].fetch, FetchStatus::Fresh);
    let p = policy(&config);
    assert!(blocked(&p, "c.malware.example") && !blocked(&p, "a.malware.example"));
    assert_eq!(
        std::fs::read(&kept).expect("kept copy"),
        b"c.malware.example\n"
    );
}
