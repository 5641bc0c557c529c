//! Events as the test suites feed them to engines and agents: one definition, so a new field
//! on an event is filled in once rather than in every suite.

use ringfence_protocol::{Event, ExecEvent};

/// `exe` started by root's shell from `/`, with no arguments: the event most tests need, whose
/// verdict depends on the path alone.
pub fn exec(exe: &str) -> Event {
    Event::Exec(ExecEvent {
        pid: 4242,
        ppid: 1,
        uid: 0,
        gid: 0,
        exe: exe.to_owned(),
        argv: vec![exe.to_owned()],
        cwd: "/".to_owned(),
        parent_exe: "/usr/bin/bash".to_owned(),
        user: String::new(),
        group: String::new(),
        ancestors: Vec::new(),
    })
}
