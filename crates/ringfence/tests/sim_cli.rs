//! Black-box tests of `ringfence sim`: the JSON a script reads has the promised keys, the
//! chart is written, the same seed prints the same figures, and bad input is refused clearly.

use serde_json::Value;
use std::process::{Command, Output};

fn ringfence(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringfence"))
        .args(args)
        .output()
        .expect("run ringfence")
}

fn json(args: &[&str]) -> Value {
    let output = ringfence(args);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("one JSON object")
}

#[test]
fn json_lists_every_strategy_with_the_promised_keys() {
    let dir = tempfile::tempdir().expect("temp dir");
    let svg = dir.path().join("chart.svg");
    let svg_arg = svg.display().to_string();
    let args = [
        "sim",
        "--endpoints",
        "5000",
        "--seed",
        "7",
        "--strategy",
        "fast=5,100",
        "--bake",
        "5m",
        "--svg",
        &svg_arg,
        "--json",
    ];
    let value = json(&args);
    let strategies = value["strategies"].as_array().expect("strategies");
    let names: Vec<&str> = strategies
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["all-at-once", "rings", "exponential", "fast"]);
    for strategy in strategies {
        assert_eq!(strategy["fault"], "crash", "the default fault");
        for key in [
            "name",
            "fault",
            "first_signal_min",
            "halt_after_signal_min",
            "hosts_reached",
            "blast_radius_pct",
            "time_to_halt_min",
            "time_to_recover_min",
            "hands_on_hosts",
        ] {
            assert!(strategy.get(key).is_some(), "{key} missing in {strategy}");
        }
    }
    assert_eq!(
        strategies[0]["hosts_reached"], 5000,
        "all at once reaches every host"
    );
    assert!(value["peak_rss_bytes"].as_u64().is_some_and(|b| b > 0));
    assert!(value["wall_s"].as_f64().is_some());
    let chart = std::fs::read_to_string(&svg).expect("chart written");
    assert!(chart.starts_with("<svg") && chart.matches("<polyline").count() == 2 * names.len());
    assert!(
        chart.contains("linear scale") && chart.contains("halted in ring0"),
        "a linear panel, halts labelled with the server's ring names"
    );

    let again = json(&args);
    assert_eq!(
        again["strategies"], value["strategies"],
        "same seed, same result"
    );
}

#[test]
fn every_fault_kind_is_named_in_the_json_and_a_wrong_one_refused() {
    for fault in ["crash", "slow", "quarantine", "deny"] {
        let value = json(&["sim", "--endpoints", "3000", "--fault", fault, "--json"]);
        let strategies = value["strategies"].as_array().expect("strategies");
        assert!(strategies.iter().all(|s| s["fault"] == fault), "{value}");
        assert_eq!(value["config"]["model"]["kind"], fault);
    }
    let output = ringfence(&["sim", "--fault", "explode"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a fault kind"));
}

#[test]
fn the_table_names_each_strategy() {
    let output = ringfence(&["sim", "--endpoints", "2000"]);
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("hosts reached") && text.contains("all-at-once") && text.contains("rings")
    );
}

#[test]
fn bad_strategies_and_shares_are_refused_with_a_reason() {
    let output = ringfence(&["sim", "--endpoints", "100", "--strategy", "x=50,10,100"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("x=50,10,100"));
    // The old flag name still works.
    for flag in ["--crash-fraction", "--fault-fraction"] {
        let output = ringfence(&["sim", flag, "2"]);
        assert!(!output.status.success());
        assert!(String::from_utf8_lossy(&output.stderr).contains("between 0 and 1"));
    }
}
