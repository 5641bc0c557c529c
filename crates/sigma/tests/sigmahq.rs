//! SigmaHQ's own Linux rules (`rules/sigmahq`, DRL 1.1, see its README): every
//! `process_creation`, `file_event` and `network_connection` rule is loaded on its own, and the
//! ones that do not load are exactly those `rules/sigmahq/README.md` lists, each with why; then
//! all of them together judge real-looking events of each category.

use ringfence_sigma::{Action, Config, EventFields, ExecView, NetworkView, Scratch};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules/sigmahq")
}

/// Every rule file, by its path under `rules/sigmahq`, with what loading it alone says: `None`
/// when it loads, the error when it does not.
fn load_each() -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    for category in ["process_creation", "file_event", "network_connection"] {
        let dir = root().join("linux").join(category);
        for entry in std::fs::read_dir(&dir).expect("the category's folder") {
            let path = entry.expect("an entry").path();
            if path.extension().is_none_or(|e| e != "yml") {
                continue;
            }
            let content = std::fs::read(&path).expect("a rule file");
            let loaded = ringfence_sigma::load(&content, &Config::default()).expect("utf-8");
            let name = format!(
                "linux/{category}/{}",
                path.file_name().expect("a name").to_string_lossy()
            );
            let verdict = match (loaded.rules.rules().len(), loaded.skipped.first()) {
                (1, None) => None,
                (_, Some(skipped)) => Some(skipped.error.to_string()),
                (n, None) => Some(format!("{n} rules in one file")),
            };
            out.insert(name, verdict);
        }
    }
    out
}

/// The README's table rows for rules that do not load: `| linux/…/x.yml | why |`.
fn documented_refusals() -> BTreeMap<String, String> {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("the README");
    readme
        .lines()
        .filter(|line| line.starts_with('|'))
        .filter_map(|line| {
            let mut cells = line.split('|').map(str::trim).filter(|c| !c.is_empty());
            let file = cells.next()?.trim_matches('`');
            let why = cells.next()?;
            file.starts_with("linux/")
                .then(|| (file.to_owned(), why.to_owned()))
        })
        .collect()
}

#[test]
fn sigmahq_linux_rules_load_except_the_documented_few() {
    let results = load_each();
    assert!(results.len() >= 100, "only {} rule files", results.len());
    let refused: BTreeMap<String, String> = results
        .iter()
        .filter_map(|(file, error)| Some((file.clone(), error.clone()?)))
        .collect();
    let documented = documented_refusals();
    let loaded = results.len() - refused.len();
    let share = loaded as f64 / results.len() as f64;
    println!(
        "SigmaHQ linux process_creation + file_event + network_connection: {loaded} of {} load ({:.1} %)",
        results.len(),
        share * 100.0
    );
    for (file, why) in &refused {
        println!("  refused {file}: {why}");
    }
    let undocumented: Vec<&String> = refused
        .keys()
        .filter(|f| !documented.contains_key(*f))
        .collect();
    let stale: Vec<&String> = documented
        .keys()
        .filter(|f| !refused.contains_key(*f))
        .collect();
    assert!(
        undocumented.is_empty() && stale.is_empty(),
        "rules/sigmahq/README.md is out of date: refused but not listed {undocumented:#?}; \
         listed but loading {stale:#?}"
    );
    assert!(share >= 0.95, "only {:.1} % load", share * 100.0);
}

/// Every SigmaHQ rule that loads, as one content.
fn all_loading() -> ringfence_sigma::Loaded {
    let mut stream = Vec::new();
    for (file, error) in load_each() {
        if error.is_none() {
            stream.extend(std::fs::read(root().join(file)).expect("a rule file"));
            stream.extend(b"\n---\n");
        }
    }
    let loaded = ringfence_sigma::load(&stream, &Config::default()).expect("utf-8");
    assert!(loaded.skipped.is_empty(), "{:?}", loaded.skipped);
    loaded
}

fn connection<'a>(exe: &'a str, to: &'a str, port: u16, host: &'a str) -> EventFields<'a> {
    EventFields::from_network(NetworkView {
        pid: 4242,
        uid: 1000,
        user: "alice",
        exe,
        initiated: true,
        source_ip: "192.168.1.20",
        source_port: 51_000,
        destination_ip: to,
        destination_port: port,
        destination_hostname: host,
    })
}

#[test]
fn sigmahq_rules_judge_each_category_and_credit_their_authors() {
    let loaded = all_loading();
    let mut scratch = Scratch::default();
    let argv: Vec<String> = ["base64", "-d", "/tmp/payload"].map(str::to_owned).into();
    let decode = EventFields::from_exec(ExecView {
        pid: 10,
        ppid: 9,
        uid: 1000,
        exe: "/usr/bin/base64",
        argv: &argv,
        cwd: "/tmp",
        parent_exe: "/usr/bin/bash",
        user: "alice",
        parent_argv: None,
    });
    let outcome = loaded
        .rules
        .evaluate(&decode, &mut scratch)
        .expect("base64 -d matches");
    assert_eq!(outcome.rule.id, "e2072cab-8c9a-459b-b63c-40ae79e27031");
    assert_eq!(outcome.action, Action::Observe);
    assert!(
        outcome.message().contains("rule by Daniil Yugoslavskiy"),
        "{}",
        outcome.message()
    );

    // A callback to a typical implant port on the internet matches; the same port inside the
    // private ranges the rule filters out (`cidr`) does not match that rule.
    let callback = connection("/usr/bin/python3", "203.0.113.5", 4444, "");
    let outcome = loaded
        .rules
        .evaluate(&callback, &mut scratch)
        .expect("the callback matches");
    assert_eq!(outcome.rule.id, "dbfc7c98-04ab-4ab7-aa94-c74d22aa7376");
    let inside = connection("/usr/bin/python3", "10.1.2.3", 4444, "");
    assert!(
        loaded
            .rules
            .evaluate(&inside, &mut scratch)
            .is_none_or(|o| o.rule.id != "dbfc7c98-04ab-4ab7-aa94-c74d22aa7376")
    );
    let tunnel = connection("/opt/ngrok", "3.4.5.6", 443, "tunnel.eu.ngrok.com");
    let outcome = loaded
        .rules
        .evaluate(&tunnel, &mut scratch)
        .expect("the tunnel matches");
    assert_eq!(outcome.rule.id, "19bf6fdb-7721-4f3d-867f-53467f6a5db6");

    // Ordinary traffic: a package download over HTTPS by apt.
    let ordinary = connection(
        "/usr/lib/apt/methods/https",
        "151.101.2.132",
        443,
        "deb.debian.org",
    );
    assert_eq!(
        loaded
            .rules
            .evaluate(&ordinary, &mut scratch)
            .map(|o| o.rule.id.clone()),
        None
    );
}
