//! `ringfence demo` end to end, as the README runs it (a smaller fleet): the bad release stays
//! in the first ring, every host recovers, nothing is lost or wrongly denied, and act two's
//! preflight stops the same content, act three's stalling release halts in the first ring, and
//! act four's crash loop is undone by the guard.

use std::process::Command;

#[test]
fn demo_contains_the_poisoned_update() {
    let output = Command::new(env!("CARGO_BIN_EXE_ringfence"))
        .args([
            "demo",
            "--hosts",
            "4",
            "--canaries",
            "1",
            "--no-live",
            "--json",
        ])
        .output()
        .expect("run the demo");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "demo failed: {stderr}");
    let summary: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("one JSON object");
    for key in [
        "hosts_total",
        "canary_hosts",
        "hosts_reached_by_bad_release",
        "hosts_refused_bad_release",
        "bad_release_max_ring",
        "time_to_halt_s",
        "time_to_recover_s",
        "events_lost",
        "wrong_denies",
        "crash_groups",
        "preflight_blocked",
    ] {
        assert!(summary.get(key).is_some(), "missing {key}: {summary}");
    }
    let live = summary["live_host"].as_bool().expect("live_host");
    assert_eq!(summary["hosts_total"], if live { 5 } else { 4 });
    assert_eq!(summary["bad_release_max_ring"], 0, "{summary}");
    // Ring 0 is the canary plus whichever hosts hash into its 1%: never the whole fleet. The
    // canary either ran it (and the gates saw it crash) or tried it on its own recent events
    // first and refused it.
    let reached = summary["hosts_reached_by_bad_release"]
        .as_u64()
        .expect("count");
    let refused = summary["hosts_refused_bad_release"]
        .as_u64()
        .expect("count");
    let total = summary["hosts_total"].as_u64().expect("total");
    assert!(reached + refused >= 1 && reached < total, "{summary}");
    assert_eq!(summary["events_lost"], 0, "{summary}");
    assert_eq!(summary["wrong_denies"], 0, "{summary}");
    assert_eq!(summary["preflight_blocked"], true, "{summary}");
    // Act three: a release that stalls without crashing is caught in the first ring too.
    assert_eq!(summary["stall_halted"], true, "{summary}");
    assert_eq!(summary["stall_max_ring"], 0, "{summary}");
    assert!(
        summary["crash_groups"].as_u64().expect("groups") >= 1,
        "{summary}"
    );
    assert!(
        summary["events_answered"].as_u64().expect("answered") > 0,
        "{summary}"
    );
    // Act four: an agent crashed three times is back on the last known good release by its
    // guard, and the host said so to the server.
    assert!(
        summary["guard_restores"].as_u64().expect("restores") >= 1,
        "{summary}"
    );
    assert_eq!(summary["guard_restore_reported"], true, "{summary}");
    // Every crash group counted is also explained.
    assert_eq!(
        summary["crash_group_summaries"].as_array().map(Vec::len),
        summary["crash_groups"].as_u64().map(|n| n as usize),
        "{summary}"
    );
    // Everything the demo made is gone.
    let leftovers = std::fs::read_dir(std::env::temp_dir())
        .expect("temp dir")
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("ringfence-demo.")
        })
        .count();
    assert_eq!(leftovers, 0, "temporary directories left behind");
}
