//! What can go wrong when opening or reading a sensor, worded for the operator who must fix it.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SensorError {
    /// fanotify permission events need `CAP_SYS_ADMIN`.
    #[error("fanotify permission events need CAP_SYS_ADMIN; run as root")]
    NeedsCapSysAdmin,
    /// The netlink process connector needs `CAP_NET_ADMIN` (root).
    #[error("the netlink process connector needs CAP_NET_ADMIN; run as root")]
    NeedsCapNetAdmin,
    /// A configured mount or path is missing.
    #[error("{0} does not exist")]
    NoSuchPath(PathBuf),
    /// A mount mark was asked for on a path that is not a mount point; marking it would mark
    /// the enclosing mount instead.
    #[error("{0} is not a mount point (see /proc/self/mountinfo); give the mount point itself")]
    NotAMountPoint(PathBuf),
    /// The kernel lacks a feature we need.
    #[error("this kernel does not support {0}")]
    Unsupported(&'static str),
    /// Any other system call failure, with what we were doing.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The self-upgrade handoff from a previous image is malformed.
    #[error("self-upgrade handoff: {0}")]
    Handoff(String),
    /// A replay corpus could not be read.
    #[error(transparent)]
    Corpus(#[from] ringfence_protocol::corpus::CorpusError),
}

impl SensorError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> SensorError {
        SensorError::Io {
            what: what.into(),
            source,
        }
    }
}
