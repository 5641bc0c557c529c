//! An engine failure on a managed host reaches the server as a typed `failure` report, once:
//! the agent hands it to its failure channel, the managed agent spools it, the uplink uploads
//! it. The alert that mentions it still goes out as an alert, and nothing turns that alert into
//! a second failure report (as the alert follower once did).

use ringfence_demo::control::Control;
use ringfence_demo::fleet::Fleet;
use ringfence_protocol::report::{FailureReport, ReportBody};
use ringfence_testkit::events::exec;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The one exec the release traps on, once in every [`CYCLE`] events of the traffic.
const TRAP_TARGET: &str = "/usr/bin/ringfence-trap-target";
const CYCLE: usize = 300;

/// The server's failure reports, each read back into its type (a report that does not read
/// fails the test).
fn failure_reports(control: &Control) -> Vec<(String, FailureReport)> {
    control
        .get("/api/v1/reports?kind=failure")
        .expect("reports")["reports"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|report| {
            let id = report["id"].as_str().expect("an id").to_owned();
            match ReportBody::decode(&id, "failure", report["body"].clone()) {
                Ok(ReportBody::Failure(failure)) => (id, failure),
                other => panic!("not a typed failure: {report}: {other:?}"),
            }
        })
        .collect()
}

#[test]
fn an_engine_failure_on_a_managed_host_reaches_the_server_once_as_a_typed_report() {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_ringfence"));
    let mut fleet = Fleet::start_server(&exe).expect("a server");
    let control = Control::new(&fleet).expect("an operator");
    // One exec in a cycle is the release's trap: the install's checked swap tries the release
    // on the host's last 64 events, which usually do not hold it, and the release serves until
    // the trap comes round. When the swap does see it, the host refuses the release (a failure
    // `during: install`), and the next version is tried.
    let corpus = fleet.dir.path().join("traffic.jsonl");
    let events: Vec<_> = (0..CYCLE)
        .map(|i| {
            exec(if i + 1 == CYCLE {
                TRAP_TARGET
            } else {
                "/usr/bin/true"
            })
        })
        .collect();
    let file = std::fs::File::create(&corpus).expect("corpus file");
    ringfence_protocol::corpus::write(std::io::BufWriter::new(file), &events).expect("corpus");
    let tokens = fleet.enroll_tokens(1).expect("a token");
    fleet
        .start_hosts(&tokens, 1, false, &corpus, 100)
        .expect("a host");
    let started = Instant::now();
    while control.get("/api/v1/status").expect("status")["online"].as_u64() != Some(1) {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the host never came online"
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // A good release first: a bad one then rolls back to it, and the next can be tried (a
    // channel's failed first release would get a plan that disables its engine instead).
    control
        .publish("1.0.0", "faulty", "ok", "healthy", false)
        .expect("publish")
        .expect("the good release passes preflight");
    let good = control.start_rollout("1.0.0", 1.0).expect("rollout");
    let good = good["id"].as_str().expect("a rollout id").to_owned();
    loop {
        let phase = control.rollout(&good).expect("rollout")["phase"].clone();
        if phase == "completed" {
            break;
        }
        assert!(
            phase == "running" && started.elapsed() < Duration::from_secs(180),
            "the good release did not complete: {phase}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    let deadline = Instant::now() + Duration::from_secs(300);
    let mut minor = 0;
    let mut rollout: Option<String> = None;
    let serving_failure = loop {
        let reports = failure_reports(&control);
        if let Some((id, _)) = reports.iter().find(|(_, failure)| failure.during.is_none()) {
            break id.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no failure while serving reached the server: {reports:?}"
        );
        let ended = rollout
            .as_ref()
            .is_none_or(|id| control.rollout(id).expect("rollout")["phase"] != "running");
        if ended {
            minor += 1;
            let version = format!("1.{minor}.0");
            control
                .publish(
                    &version,
                    "faulty",
                    &format!("trap {TRAP_TARGET}"),
                    "traps on one exec",
                    true,
                )
                .expect("publish")
                .expect("published with preflight skipped");
            let started = control.start_rollout(&version, 600.0).expect("rollout");
            rollout = started["id"].as_str().map(str::to_owned);
        }
        std::thread::sleep(Duration::from_millis(500));
    };

    // Let the host upload whatever else it has (a second copy would come with it).
    std::thread::sleep(Duration::from_secs(3));
    let reports = failure_reports(&control);
    let bodies: BTreeSet<String> = reports
        .iter()
        .map(|(_, failure)| serde_json::to_string(failure).expect("json"))
        .collect();
    assert_eq!(
        bodies.len(),
        reports.len(),
        "a failure was reported twice: {reports:?}"
    );
    for (id, failure) in &reports {
        assert!(
            !id.contains(":alert-"),
            "a failure report made from an alert line: {id}"
        );
        assert_eq!(failure.record.engine, "faulty", "{id}");
    }
    // The alerts that mention the failures still arrive, as alerts.
    let alerts: Vec<Value> = control.get("/api/v1/reports?kind=alert").expect("alerts")["reports"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        alerts
            .iter()
            .any(|alert| alert["body"]["unmapped"]["ringfence"]["failures"]
                .as_array()
                .is_some_and(|failures| !failures.is_empty())),
        "the alert of {serving_failure} did not arrive"
    );
    fleet.stop_hosts();
}
