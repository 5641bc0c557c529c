//! The follower against real files: restarts, a crash between spooling and saving, rotation
//! (live and while down), truncation, partial lines, a refusing spool, a broken state file.

use super::super::budget::REPORTS_PER_SECOND;
use super::*;
use std::collections::BTreeSet;
use std::io::Write;
use std::time::Instant;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn alerts(&self) -> PathBuf {
        self.dir.path().join("alerts.jsonl")
    }

    fn append(&self, from: usize, n: usize) {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.alerts())
            .expect("open");
        for i in from..from + n {
            writeln!(file, "{{\"time\":{i},\"message\":\"alert {i}\"}}").expect("write");
        }
    }

    fn follower(&self) -> Follower {
        Follower::new(self.alerts(), state_path(&self.alerts()))
    }
}

/// Polls once, returning what was handed out.
fn poll(follower: &mut Follower) -> Vec<Line> {
    let mut lines = Vec::new();
    follower.poll(&mut |line| {
        lines.push(line.clone());
        true
    });
    lines
}

fn messages(lines: &[Line]) -> Vec<String> {
    lines
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(&l.text).expect("json")["message"]
                .as_str()
                .expect("message")
                .to_owned()
        })
        .collect()
}

fn range(from: usize, to: usize) -> Vec<String> {
    (from..to).map(|i| format!("alert {i}")).collect()
}

#[test]
fn restarts_ship_every_alert_exactly_once() {
    let fx = Fixture::new();
    fx.append(0, 55);
    let mut seen = Vec::new();
    seen.extend(poll(&mut fx.follower()));
    fx.append(55, 10);
    // Two restarts: each new follower starts where the last one saved.
    seen.extend(poll(&mut fx.follower()));
    fx.append(65, 10);
    let mut third = fx.follower();
    seen.extend(poll(&mut third));
    assert!(poll(&mut third).is_empty());
    assert_eq!(messages(&seen), range(0, 75));
    let ids: BTreeSet<_> = seen.iter().map(|l| l.id.clone()).collect();
    assert_eq!(ids.len(), 75, "ids are unique");
}

#[test]
fn a_crash_before_the_offset_is_saved_resends_the_same_ids() {
    let fx = Fixture::new();
    fx.append(0, 5);
    // The state cannot be written (a directory is in the way): the crash we inject.
    let state = state_path(&fx.alerts());
    std::fs::create_dir(&state).expect("block the state file");
    let first = poll(&mut fx.follower());
    assert_eq!(first.len(), 5);
    let again = poll(&mut fx.follower());
    assert_eq!(
        again, first,
        "same lines, same ids: the server stores them once"
    );
    // Once the state can be written, nothing comes twice.
    std::fs::remove_dir(&state).expect("unblock");
    assert_eq!(poll(&mut fx.follower()), first);
    assert!(poll(&mut fx.follower()).is_empty());
}

#[test]
fn a_corrupt_state_file_starts_over_with_the_same_ids() {
    let fx = Fixture::new();
    fx.append(0, 3);
    let first = poll(&mut fx.follower());
    std::fs::write(state_path(&fx.alerts()), b"{\"inode\": 1, \"off").expect("corrupt");
    assert_eq!(poll(&mut fx.follower()), first);
    assert!(
        poll(&mut fx.follower()).is_empty(),
        "the state was rewritten"
    );
}

#[test]
fn live_rotation_finishes_the_old_file_then_reads_the_new() {
    let fx = Fixture::new();
    fx.append(0, 3);
    let mut follower = fx.follower();
    assert_eq!(messages(&poll(&mut follower)), range(0, 3));
    fx.append(3, 2);
    let mut rotated = fx.alerts().into_os_string();
    rotated.push(".1");
    std::fs::rename(fx.alerts(), &rotated).expect("rotate");
    fx.append(5, 2);
    let lines = poll(&mut follower);
    assert_eq!(messages(&lines), range(3, 7));
    fx.append(7, 1);
    assert_eq!(messages(&poll(&mut follower)), range(7, 8));
    // And a restart after the rotation continues in the new file.
    fx.append(8, 1);
    assert_eq!(messages(&poll(&mut fx.follower())), range(8, 9));
}

#[test]
fn rotation_while_down_finishes_the_rotated_file() {
    let fx = Fixture::new();
    fx.append(0, 3);
    assert_eq!(messages(&poll(&mut fx.follower())), range(0, 3));
    fx.append(3, 2);
    let mut rotated = fx.alerts().into_os_string();
    rotated.push(".1");
    std::fs::rename(fx.alerts(), &rotated).expect("rotate");
    fx.append(5, 1);
    assert_eq!(messages(&poll(&mut fx.follower())), range(3, 6));
    // The rotated file gone for good: the new one alone, from where it was left.
    std::fs::remove_file(&rotated).expect("remove");
    fx.append(6, 1);
    assert_eq!(messages(&poll(&mut fx.follower())), range(6, 7));
}

#[test]
fn truncation_starts_over_at_zero_with_new_ids() {
    let fx = Fixture::new();
    fx.append(0, 4);
    let mut follower = fx.follower();
    let before = poll(&mut follower);
    std::fs::write(fx.alerts(), b"").expect("truncate");
    fx.append(100, 1);
    let after = poll(&mut follower);
    assert_eq!(messages(&after), range(100, 101));
    assert_ne!(
        after[0].id, before[0].id,
        "same place, other line, other id"
    );
    // Truncated while down: the same.
    std::fs::write(fx.alerts(), b"").expect("truncate");
    fx.append(200, 1);
    assert_eq!(messages(&poll(&mut fx.follower())), range(200, 201));
}

#[test]
fn a_partial_line_waits_for_its_newline() {
    let fx = Fixture::new();
    fx.append(0, 1);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(fx.alerts())
        .expect("open");
    file.write_all(b"{\"message\":\"alert 1\"").expect("write");
    let mut follower = fx.follower();
    assert_eq!(messages(&poll(&mut follower)), range(0, 1));
    file.write_all(b"}\n").expect("write");
    assert_eq!(messages(&poll(&mut follower)), range(1, 2));
}

#[test]
fn a_refused_line_is_offered_again() {
    let fx = Fixture::new();
    fx.append(0, 3);
    let mut follower = fx.follower();
    let mut taken = Vec::new();
    follower.poll(&mut |line| {
        if taken.len() == 1 {
            return false; // the spool is full
        }
        taken.push(line.clone());
        true
    });
    assert_eq!(messages(&taken), range(0, 1));
    // A restart now resumes at the refused line too.
    assert_eq!(messages(&poll(&mut fx.follower())), range(1, 3));
}

#[test]
fn a_missing_file_is_waited_for() {
    let fx = Fixture::new();
    let mut follower = fx.follower();
    assert!(poll(&mut follower).is_empty());
    fx.append(0, 2);
    assert_eq!(messages(&poll(&mut follower)), range(0, 2));
}

#[test]
fn an_alert_is_one_report_under_its_lines_id_and_its_failures_stay_inside() {
    let line = Line {
        id: "alert-1-0-00".into(),
        text: r#"{"time":7,"unmapped":{"ringfence":{"failures":[{"kind":"trap"}]}}}"#.into(),
    };
    let report = report_of(&line).expect("an alert");
    assert_eq!(report.id, "alert-1-0-00");
    assert_eq!(report.at_ms, 7);
    let ReportBody::Alert(alert) = &report.body else {
        panic!("an alert report: {report:?}");
    };
    // The failure travels on its own typed path; the alert keeps mentioning it.
    assert_eq!(
        alert["unmapped"]["ringfence"]["failures"][0]["kind"],
        "trap"
    );
    assert!(
        report_of(&Line {
            id: "x".into(),
            text: "not json\n".into()
        })
        .is_none()
    );
}

#[test]
fn the_shipper_spools_each_alert_once_across_restarts() {
    let fx = Fixture::new();
    let spool = Arc::new(Spool::open(&fx.dir.path().join("spool"), 64 << 20).expect("spool"));
    // Below the rate limit per round, so nothing is suppressed.
    let mut next = 0;
    for _ in 0..3 {
        fx.append(next, 15);
        next += 15;
        let stop = Arc::new(AtomicBool::new(false));
        let budget = Arc::new(ReportBudget::new(REPORTS_PER_SECOND));
        let thread = ship_alerts(fx.alerts(), Arc::clone(&spool), budget, Arc::clone(&stop));
        let deadline = Instant::now() + Duration::from_secs(10);
        while spool.peek(1000).len() < next {
            assert!(Instant::now() < deadline, "shipper too slow");
            std::thread::sleep(Duration::from_millis(20));
        }
        // Give a buggy shipper the time to send something twice.
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        thread.join().expect("shipper");
    }
    let reports = spool.peek(1000);
    assert_eq!(reports.len(), 45, "every alert once");
    let ids: BTreeSet<_> = reports.iter().map(|(_, r)| r.id.clone()).collect();
    assert_eq!(ids.len(), 45);
}

#[test]
fn truncated_and_rewritten_to_the_same_length_is_read_again() {
    let fx = Fixture::new();
    fx.append(10, 2);
    let mut follower = fx.follower();
    assert_eq!(messages(&poll(&mut follower)), range(10, 12));
    // Same length, other lines: the size alone cannot tell.
    std::fs::write(fx.alerts(), b"").expect("truncate");
    fx.append(20, 2);
    assert_eq!(messages(&poll(&mut follower)), range(20, 22));
    std::fs::write(fx.alerts(), b"").expect("truncate");
    fx.append(30, 3);
    assert_eq!(messages(&poll(&mut fx.follower())), range(30, 33));
}

#[test]
fn an_unreadable_alert_file_is_logged_and_retried() {
    let fx = Fixture::new();
    // A directory where the file should be: opening works, reading fails (EISDIR).
    std::fs::create_dir(fx.alerts()).expect("directory");
    let mut follower = fx.follower();
    assert!(poll(&mut follower).is_empty());
    std::fs::remove_dir(fx.alerts()).expect("remove");
    fx.append(0, 2);
    let mut follower = fx.follower();
    assert_eq!(messages(&poll(&mut follower)), range(0, 2));
}

#[test]
fn a_state_file_with_impossible_figures_starts_over() {
    let fx = Fixture::new();
    fx.append(0, 2);
    let first = poll(&mut fx.follower());
    let inode = std::fs::metadata(fx.alerts()).expect("stat").ino();
    for state in [
        // Beyond the end of the file.
        serde_json::json!({"inode": inode, "offset": u64::MAX}),
        // A tail longer than any we save.
        serde_json::json!({"inode": inode, "offset": 10, "tail": {"len": 1u64 << 60, "hash": 0}}),
    ] {
        std::fs::write(state_path(&fx.alerts()), state.to_string()).expect("write state");
        assert_eq!(poll(&mut fx.follower()), first, "{state}");
    }
}
