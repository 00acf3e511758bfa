//! Logging setup. Structured `tracing` events; INFO for lifecycle, nothing
//! per query above DEBUG. hickory's per-request INFO lines are held at WARN, and the per-lookup
//! warnings of its resolver (every upstream hiccup) at ERROR.

/// How log lines are written to stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event (the default).
    Text,
    /// One JSON object per line, with the same fields as the text format
    /// (`timestamp`, `level`, `fields.message` and the event's own fields),
    /// for journald's or a SIEM's collectors.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("unknown log format {other:?} (text or json)")),
        }
    }
}

/// Install the global subscriber, logging to stderr: `filter` in RUST_LOG syntax, hickory's own
/// per-request lines held to warnings and worse.
pub fn init_logging(filter: &str, format: LogFormat) {
    let filter = format!(
        "{filter},hickory_server=warn,hickory_proto=error,hickory_resolver=error,hickory_net=error"
    );
    let env = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
}
