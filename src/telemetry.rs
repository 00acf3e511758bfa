//! Logging setup. Structured `tracing` events; INFO for lifecycle, nothing
//! per query above DEBUG. hickory's per-request INFO lines are held at WARN, and the per-lookup
//! warnings of its resolver (every upstream hiccup) at ERROR.

/// Install the global subscriber, logging to stderr.
pub fn init_logging(filter: &str) {
    let filter = format!(
        "{filter},hickory_server=warn,hickory_proto=error,hickory_resolver=error,hickory_net=error"
    );
    let env = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(env)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
