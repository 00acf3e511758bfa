//! Checks of the source tree itself, in the spirit of rust-analyzer's
//! `tidy` tests: the policy core's boundary and the import graph between
//! top-level modules. They read the files under `src/` and fail with what
//! to fix.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The layers of the crate, bottom first. A module may use modules of
/// lower layers only, which keeps the graph free of cycles and readable
/// top-down: `main -> cli/server -> pipeline/sightings/rpz -> feeds/history ->
/// config -> policy -> leaves`.
const LAYERS: &[&[&str]] = &[
    &["clock", "error", "exit", "fs", "http", "tsig", "wire"],
    &["policy", "zones"],
    &["config"],
    &["feeds", "history"],
    &["pipeline", "rpz", "sightings"],
    &["cli", "server", "telemetry"],
];

/// Crates the policy core must not name: it is pure (no runtime, no
/// sockets, no HTTP, no DNS library).
const NOT_IN_POLICY: &[&str] = &["tokio", "hickory_", "reqwest", "axum"];

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The file's code without comments (line comments, doc comments) and
/// string literals' contents, so a doc link or a message is no dependency.
fn code_of(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut in_str = false;
        let mut prev = '\0';
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            if in_str {
                if c == '"' && prev != '\\' {
                    in_str = false;
                    out.push('"');
                }
                prev = if prev == '\\' && c == '\\' { '\0' } else { c };
                continue;
            }
            if c == '/' && chars.peek() == Some(&'/') {
                break;
            }
            if c == '"' {
                in_str = true;
            }
            out.push(c);
            prev = c;
        }
        out.push('\n');
    }
    out
}

/// The top-level module a file belongs to (`server` for
/// `src/server/handler.rs`), or `None` for lib.rs, main.rs and this file.
fn top_module(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src_dir()).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main" | "tidy")).then(|| name.to_string())
}

/// Top-level modules named in `crate::x` paths, including
/// `crate::{x, y::z}` groups.
fn crate_uses(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Only the first segment of each item of the group, at depth 0.
            let mut depth = 0;
            let mut item_start = true;
            let mut word = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && (c.is_alphanumeric() || c == '_') => word.push(c),
                    _ => {
                        if !word.is_empty() {
                            found.push(std::mem::take(&mut word));
                        }
                        if !c.is_whitespace() {
                            item_start = false;
                        }
                    }
                }
            }
            if !word.is_empty() {
                found.push(word);
            }
        } else {
            let word: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            found.push(word);
        }
    }
    found
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// Every edge between top-level modules: (from, to) -> a file that uses it.
fn module_edges() -> BTreeMap<(String, String), PathBuf> {
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    let mut edges = BTreeMap::new();
    for f in files {
        let Some(from) = top_module(&f) else { continue };
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        for to in crate_uses(&code_of(&text)) {
            if to != from && !to.is_empty() {
                edges.entry((from.clone(), to)).or_insert_with(|| f.clone());
            }
        }
    }
    edges
}

#[test]
fn every_top_level_module_has_a_layer() {
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    let mut missing: Vec<String> = files
        .iter()
        .filter_map(|f| top_module(f))
        .filter(|m| layer_of(m).is_none())
        .collect();
    missing.sort();
    missing.dedup();
    assert!(
        missing.is_empty(),
        "add these modules to LAYERS in src/tidy.rs (and to ARCHITECTURE.md): {missing:?}"
    );
}

#[test]
fn modules_use_only_lower_layers() {
    let mut wrong = Vec::new();
    for ((from, to), file) in module_edges() {
        let (Some(a), Some(b)) = (layer_of(&from), layer_of(&to)) else {
            continue;
        };
        if b >= a {
            wrong.push(format!(
                "{from} (layer {a}) uses {to} (layer {b}) in {}",
                file.display()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "the import graph must read top-down (src/tidy.rs LAYERS):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_policy_core_names_no_runtime_network_or_dns_crate() {
    let mut files = Vec::new();
    rust_files(&src_dir().join("policy"), &mut files);
    assert!(!files.is_empty(), "src/policy has no files?");
    let mut wrong = Vec::new();
    for f in files {
        let code = code_of(&std::fs::read_to_string(&f).unwrap_or_default());
        for (n, line) in code.lines().enumerate() {
            for krate in NOT_IN_POLICY {
                let named = line.match_indices(krate).any(|(i, _)| {
                    let before = line[..i].chars().next_back();
                    !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                });
                if named {
                    wrong.push(format!("{}:{}: {}", f.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "src/policy must stay pure (no {NOT_IN_POLICY:?}):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_checks_see_what_they_check() {
    // The checks must be able to fail: they find the edges that exist.
    let edges = module_edges();
    assert!(edges.contains_key(&("server".into(), "policy".into())));
    assert!(edges.contains_key(&("feeds".into(), "policy".into())));
    assert_eq!(
        crate_uses("use crate::{config::Config, policy::{A, B}};\nlet x = crate::fs::f();"),
        ["config", "policy", "fs"]
    );
    assert_eq!(
        code_of("let a = 1; // crate::x\n/// crate::y"),
        "let a = 1; \n\n"
    );
    assert_eq!(code_of(r#"f("crate::x"); g()"#), "f(\"\"); g()\n");
}
