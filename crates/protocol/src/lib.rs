//! Types shared by every ringfence process: what the kernel tells us (events), what engines
//! answer (verdicts), what goes wrong (failure records), and how events are stored (corpus).
//!
//! Nothing here does I/O beyond reading and writing corpus files; nothing here knows about
//! wasm, fanotify or HTTP. Every type serialises to stable JSON that is part of our public
//! interface (corpora, alerts, reports), so fields are only ever added, never renamed.
#![forbid(unsafe_code)]

pub mod api;
pub mod clock;
pub mod content;
pub mod corpus;
pub mod duration;
pub mod enforcement;
pub mod event;
pub mod failure;
pub mod guard_link;
pub mod report;
pub mod spool;
pub mod verdict;

pub use enforcement::Enforcement;
pub use event::{
    Ancestor, Event, ExecEvent, ExitEvent, FileChangeEvent, FileOp, ForkEvent, MAX_ANCESTORS,
    NetworkEvent, NetworkOp, OpenEvent, PrivilegeEvent, PrivilegeOp, Process,
};
pub use failure::{FailureKind, FailureRecord, Frame};
pub use verdict::{Action, FailurePolicy, Severity, Verdict};
