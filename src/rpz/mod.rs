//! RPZ export: the list as a Response Policy Zone for the hospital's own
//! resolvers (BIND, Unbound, Knot Resolver), as a file and by zone transfer.
//!
//! A layer around the policy core: [`zone`] turns a loaded
//! [`crate::policy::Policy`] into triggers as it walks the index,
//! [`journal`] keeps the differences between versions for IXFR, [`xfr`]
//! answers transfers inside `schild serve`, [`notify`] tells secondaries,
//! and [`tsig`] authenticates them.

pub mod journal;
pub mod notify;
pub mod xfr;
pub mod zone;

pub use zone::{
    Section, Target, Trigger, Triggers, ZoneError, ZoneSettings, ZoneStats, write_zone,
};
