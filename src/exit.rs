//! Exit codes (sysexits.h where one fits), shared by the commands and `serve`.

pub const OK: i32 = 0;
/// Something failed (or, for `check`, the name is blocked).
pub const FAILURE: i32 = 1;
/// Wrong flags or arguments (the code clap exits with).
pub const USAGE: i32 = 2;
/// `check`: the lookup could not be done.
pub const CHECK_ERROR: i32 = 2;
/// A needed service is unavailable: cannot listen, no list with `fail_closed`.
pub const UNAVAILABLE: i32 = 69;
/// The configuration is invalid.
pub const CONFIG: i32 = 78;
