//! The agent's connection to the server.
//!
//! - [`spool::Spool`]: every alert, failure record, crash report and telemetry sample goes to a
//!   bounded directory on disk first, and leaves it only when the server acknowledged it.
//! - [`client::ServerClient`]: typed HTTP calls (enroll, heartbeat, reports, blobs) with errors
//!   that tell "the server is away" from "the server said no".
//! - [`identity::Identity`]: the enrolled agent's id and credential, stored 0600.
//! - [`client_cert::AgentKey`]: the key made on the host at enrollment; the certificate the
//!   server's CA signs for it is presented on every connection (mutual TLS).
//! - [`tls::CaCert`]: the server's CA, from a file or fetched once against a pinned fingerprint;
//!   every connection is verified against it and nothing else.
//!
//! Architecture invariant: nothing here blocks the permission path. The agent's sensor threads
//! only ever append to the spool; uploads happen on the uplink's own thread.
#![forbid(unsafe_code)]

pub mod client;
pub mod client_cert;
pub mod identity;
pub mod link;
pub mod spool;
pub mod tls;

pub use client::{ClientError, ServerClient};
pub use client_cert::{AgentCertificate, AgentKey};
pub use identity::Identity;
pub use link::{AgentHost, HostError, InstallError, Link, LinkConfig, LinkError};
pub use spool::{Priority, Spool, SpoolError, SpoolStats};
pub use tls::{CaCert, Fingerprint, TrustError};
