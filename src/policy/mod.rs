//! The policy core: normalise, compile, store, match.
//!
//! Pure code: no async runtime, no sockets, no HTTP. Feed readers (in
//! `crate::feeds`) push indicators into a [`Compiler`]; the compiler writes
//! one artifact; the server loads it as a [`Policy`] and asks it about every
//! name and address it answers.

pub mod artifact;
pub mod compile;
pub mod diff;
mod filter;
pub mod groups;
pub(crate) mod index;
pub mod ioc;
pub mod matcher;
pub mod name;
pub mod report;

pub use artifact::{ArtifactError, IpTrigger, Meta};
pub use compile::{AllowEntryError, Compiler};
pub use diff::{NewBlock, NewBlockCount, new_blocks};
pub use index::Entries;
pub use ioc::{
    Action, EventId, EventInfo, FeedId, FeedInfo, IocRecord, IocType, LocalRecord, Provenance,
    RpzRule,
};
pub use matcher::{AllowHit, Hit, NameValue, Policy, Verdict, matched_suffix};
pub use name::{NameError, NormalName, normalise, parse_name};
pub use report::{AllowScope, AllowSource, FeedReport, FetchStatus, Refusal, RefusalReason};

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
