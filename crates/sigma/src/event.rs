//! The event view rules are matched against: a few named fields, filled from whatever the
//! caller has (WIT types in the wasm guest, `ringfence_protocol::Event` natively).

use std::borrow::Cow;

/// A Sigma field ringfence can fill. Names follow Sysmon for Linux, which SigmaHQ's Linux
/// `process_creation` rules are written against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    Image,
    CommandLine,
    ParentImage,
    ParentCommandLine,
    User,
    CurrentDirectory,
    ProcessId,
    ParentProcessId,
    TargetFilename,
    DestinationIp,
    DestinationPort,
    DestinationHostname,
    SourceIp,
    SourcePort,
    Initiated,
    SourceFilename,
}

/// Number of [`Field`] variants; sizes per-event caches.
pub const FIELD_COUNT: usize = 16;

impl Field {
    /// Every field, in index order.
    pub const ALL: [Field; FIELD_COUNT] = [
        Field::Image,
        Field::CommandLine,
        Field::ParentImage,
        Field::ParentCommandLine,
        Field::User,
        Field::CurrentDirectory,
        Field::ProcessId,
        Field::ParentProcessId,
        Field::TargetFilename,
        Field::DestinationIp,
        Field::DestinationPort,
        Field::DestinationHostname,
        Field::SourceIp,
        Field::SourcePort,
        Field::Initiated,
        Field::SourceFilename,
    ];

    /// The Sigma spelling.
    pub fn name(self) -> &'static str {
        match self {
            Field::Image => "Image",
            Field::CommandLine => "CommandLine",
            Field::ParentImage => "ParentImage",
            Field::ParentCommandLine => "ParentCommandLine",
            Field::User => "User",
            Field::CurrentDirectory => "CurrentDirectory",
            Field::ProcessId => "ProcessId",
            Field::ParentProcessId => "ParentProcessId",
            Field::TargetFilename => "TargetFilename",
            Field::DestinationIp => "DestinationIp",
            Field::DestinationPort => "DestinationPort",
            Field::DestinationHostname => "DestinationHostname",
            Field::SourceIp => "SourceIp",
            Field::SourcePort => "SourcePort",
            Field::Initiated => "Initiated",
            Field::SourceFilename => "SourceFilename",
        }
    }

    /// Looks a field up by its Sigma name. ASCII case is ignored because rule authors are
    /// not consistent about it and no two supported fields differ only by case.
    pub fn from_name(name: &str) -> Option<Field> {
        Field::ALL
            .into_iter()
            .find(|field| field.name().eq_ignore_ascii_case(name))
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// Which Sigma log source category an event belongs to, as a bit set: a write-open is both a
/// `file_event` and a `file_access`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Categories(u8);

impl Categories {
    pub const NONE: Categories = Categories(0);
    pub const PROCESS_CREATION: Categories = Categories(1);
    pub const FILE_EVENT: Categories = Categories(2);
    pub const FILE_ACCESS: Categories = Categories(4);
    pub const NETWORK_CONNECTION: Categories = Categories(8);
    pub const FILE_RENAME: Categories = Categories(16);
    pub const FILE_DELETE: Categories = Categories(32);
    pub const FILE_CHANGE: Categories = Categories(64);

    /// The category named in a rule's `logsource.category`, if supported.
    pub fn from_logsource(category: &str) -> Option<Categories> {
        match category {
            "process_creation" => Some(Categories::PROCESS_CREATION),
            "file_event" => Some(Categories::FILE_EVENT),
            "file_access" => Some(Categories::FILE_ACCESS),
            "network_connection" => Some(Categories::NETWORK_CONNECTION),
            "file_rename" => Some(Categories::FILE_RENAME),
            "file_delete" => Some(Categories::FILE_DELETE),
            "file_change" => Some(Categories::FILE_CHANGE),
            _ => None,
        }
    }

    pub fn union(self, other: Categories) -> Categories {
        Categories(self.0 | other.0)
    }

    pub fn intersects(self, other: Categories) -> bool {
        self.0 & other.0 != 0
    }

    pub fn is_process_creation(self) -> bool {
        self.intersects(Categories::PROCESS_CREATION)
    }
}

/// One event as rules see it. Absent fields are `None`; Sigma's `null` matches absent and
/// empty fields alike.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFields<'a> {
    pub categories: Categories,
    values: [Option<Cow<'a, str>>; FIELD_COUNT],
}

/// The parts of an exec that rules can see; borrowed so the guest need not copy WIT strings.
#[derive(Debug, Clone, Copy)]
pub struct ExecView<'a> {
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub exe: &'a str,
    pub argv: &'a [String],
    pub cwd: &'a str,
    /// Empty when the parent is gone.
    pub parent_exe: &'a str,
    /// The name of `uid`; empty when the agent knew none.
    pub user: &'a str,
    /// The parent's command line, when the agent could read it.
    pub parent_argv: Option<&'a [String]>,
}

/// The parts of an open that rules can see.
#[derive(Debug, Clone, Copy)]
pub struct OpenView<'a> {
    pub pid: u32,
    pub uid: u32,
    pub path: &'a str,
    /// Empty when the opening process is gone.
    pub exe: &'a str,
    pub write: bool,
}

/// The parts of a network connection that rules can see (what the BPF sensor reports for a
/// connect or an accept).
#[derive(Debug, Clone, Copy)]
pub struct NetworkView<'a> {
    pub pid: u32,
    pub uid: u32,
    /// The name of `uid`; empty when the agent knew none.
    pub user: &'a str,
    /// Empty when the process is gone.
    pub exe: &'a str,
    /// True for an outgoing connection (connect), false for an accepted one.
    pub initiated: bool,
    pub source_ip: &'a str,
    pub source_port: u16,
    pub destination_ip: &'a str,
    pub destination_port: u16,
    /// Empty when no name is known for the address (the kernel sees addresses, not names).
    pub destination_hostname: &'a str,
}

/// A TCP connection seen from this host, for [`EventFields::from_connection`].
#[derive(Debug, Clone, Copy)]
pub struct ConnectionView<'a> {
    pub pid: u32,
    pub uid: u32,
    /// The name of `uid`; empty when the agent knew none.
    pub user: &'a str,
    /// Empty when the process is gone.
    pub exe: &'a str,
    /// True for a connect from this host, false for one accepted here.
    pub outgoing: bool,
    pub local_ip: &'a str,
    pub local_port: u16,
    pub remote_ip: &'a str,
    pub remote_port: u16,
}

/// What happened to a file, for [`EventFields::from_file_change`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileChange<'a> {
    /// Renamed to this name.
    Rename {
        to: &'a str,
    },
    /// Linked under this new name.
    Link {
        to: &'a str,
    },
    Unlink,
    Chmod,
    Chown,
}

/// The parts of a file change (what the BPF sensor reports) that rules can see.
#[derive(Debug, Clone, Copy)]
pub struct FileChangeView<'a> {
    pub pid: u32,
    pub uid: u32,
    /// The name of `uid`; empty when the agent knew none.
    pub user: &'a str,
    /// Empty when the process is gone.
    pub exe: &'a str,
    /// The file (for a rename or link, its old name).
    pub path: &'a str,
    pub change: FileChange<'a>,
}

/// `User` as Sysmon for Linux writes it: the name, or the numeric id when there is none.
fn user<'a>(name: &'a str, uid: u32) -> Cow<'a, str> {
    if name.is_empty() {
        Cow::Owned(uid.to_string())
    } else {
        Cow::Borrowed(name)
    }
}

impl<'a> EventFields<'a> {
    /// An event of `categories` with no fields set.
    pub fn new(categories: Categories) -> EventFields<'a> {
        EventFields {
            categories,
            values: Default::default(),
        }
    }

    /// Sets (or clears) one field.
    pub fn set(&mut self, field: Field, value: Option<Cow<'a, str>>) -> &mut Self {
        self.values[field.index()] = value;
        self
    }

    /// Builder form of [`EventFields::set`].
    pub fn with(mut self, field: Field, value: impl Into<Cow<'a, str>>) -> Self {
        self.values[field.index()] = Some(value.into());
        self
    }

    pub fn get(&self, field: Field) -> Option<&str> {
        self.values[field.index()].as_deref()
    }

    /// A `process_creation` event. `CommandLine` is argv joined with single spaces (what
    /// `ps` shows; quoting is lost). `User` is the user name the agent resolved, or the numeric
    /// uid as a decimal string when it had none. `ParentCommandLine` is the parent's argv
    /// joined the same way, absent when the agent could not read it.
    pub fn from_exec(exec: ExecView<'a>) -> EventFields<'a> {
        let mut fields = EventFields::new(Categories::PROCESS_CREATION)
            .with(Field::Image, exec.exe)
            .with(Field::CommandLine, exec.argv.join(" "))
            .with(Field::User, user(exec.user, exec.uid))
            .with(Field::CurrentDirectory, exec.cwd)
            .with(Field::ProcessId, exec.pid.to_string())
            .with(Field::ParentProcessId, exec.ppid.to_string());
        if !exec.parent_exe.is_empty() {
            fields.set(Field::ParentImage, Some(Cow::Borrowed(exec.parent_exe)));
        }
        if let Some(argv) = exec.parent_argv {
            fields.set(Field::ParentCommandLine, Some(Cow::Owned(argv.join(" "))));
        }
        fields
    }

    /// A `network_connection` event. `Initiated` is `true` or `false`, as Sysmon writes it
    /// and SigmaHQ's rules compare it; ports are decimal strings, as numbers in rules are.
    pub fn from_network(net: NetworkView<'a>) -> EventFields<'a> {
        let mut fields = EventFields::new(Categories::NETWORK_CONNECTION)
            .with(
                Field::Initiated,
                if net.initiated { "true" } else { "false" },
            )
            .with(Field::SourceIp, net.source_ip)
            .with(Field::SourcePort, net.source_port.to_string())
            .with(Field::DestinationIp, net.destination_ip)
            .with(Field::DestinationPort, net.destination_port.to_string())
            .with(Field::User, user(net.user, net.uid))
            .with(Field::ProcessId, net.pid.to_string());
        if !net.exe.is_empty() {
            fields.set(Field::Image, Some(Cow::Borrowed(net.exe)));
        }
        if !net.destination_hostname.is_empty() {
            fields.set(
                Field::DestinationHostname,
                Some(Cow::Borrowed(net.destination_hostname)),
            );
        }
        fields
    }

    /// A `network_connection` event oriented as Sysmon orients it, which SigmaHQ's rules
    /// assume: the source is whoever initiated the connection, so for an accepted connection
    /// `SourceIp` is the peer and `DestinationPort` is this host's listening port.
    pub fn from_connection(c: ConnectionView<'a>) -> EventFields<'a> {
        let (source, destination) = if c.outgoing {
            ((c.local_ip, c.local_port), (c.remote_ip, c.remote_port))
        } else {
            ((c.remote_ip, c.remote_port), (c.local_ip, c.local_port))
        };
        EventFields::from_network(NetworkView {
            pid: c.pid,
            uid: c.uid,
            user: c.user,
            exe: c.exe,
            initiated: c.outgoing,
            source_ip: source.0,
            source_port: source.1,
            destination_ip: destination.0,
            destination_port: destination.1,
            destination_hostname: "",
        })
    }

    /// A file change, in the categories SigmaHQ's rules expect: a rename is a `file_rename`
    /// (`SourceFilename` the old name, `TargetFilename` the new) and, like a link, also a
    /// `file_event` for the name it creates (so `mv payload /etc/cron.d/` meets the rules about
    /// files appearing there); an unlink is a `file_delete`; chmod and chown are `file_change`.
    pub fn from_file_change(file: FileChangeView<'a>) -> EventFields<'a> {
        let (categories, target, source) = match file.change {
            FileChange::Rename { to } => (
                Categories::FILE_RENAME.union(Categories::FILE_EVENT),
                to,
                Some(file.path),
            ),
            FileChange::Link { to } => (Categories::FILE_EVENT, to, Some(file.path)),
            FileChange::Unlink => (Categories::FILE_DELETE, file.path, None),
            FileChange::Chmod | FileChange::Chown => (Categories::FILE_CHANGE, file.path, None),
        };
        let mut fields = EventFields::new(categories)
            .with(Field::TargetFilename, target)
            .with(Field::User, user(file.user, file.uid))
            .with(Field::ProcessId, file.pid.to_string());
        if let Some(source) = source {
            fields.set(Field::SourceFilename, Some(Cow::Borrowed(source)));
        }
        if !file.exe.is_empty() {
            fields.set(Field::Image, Some(Cow::Borrowed(file.exe)));
        }
        fields
    }

    /// A `file_access` event, and also a `file_event` when the file is opened for writing.
    pub fn from_open(open: OpenView<'a>) -> EventFields<'a> {
        let categories = if open.write {
            Categories::FILE_ACCESS.union(Categories::FILE_EVENT)
        } else {
            Categories::FILE_ACCESS
        };
        let mut fields = EventFields::new(categories)
            .with(Field::TargetFilename, open.path)
            .with(Field::User, open.uid.to_string())
            .with(Field::ProcessId, open.pid.to_string());
        if !open.exe.is_empty() {
            fields.set(Field::Image, Some(Cow::Borrowed(open.exe)));
        }
        fields
    }
}
