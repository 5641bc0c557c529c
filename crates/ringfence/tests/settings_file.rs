//! Settings files as a service meets them: `ringfence server --config FILE` takes its options
//! from the file, an environment variable wins over the file, and a file with a key that is not
//! an option stops the service with a message naming the file and the key.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn ringfence() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ringfence"))
}

#[test]
fn the_server_runs_on_its_settings_file_and_the_environment_wins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = dir.path().join("server.toml");
    let from_file = dir.path().join("from-file");
    let from_env = dir.path().join("from-env");
    std::fs::write(
        &settings,
        format!(
            "listen = \"127.0.0.1:0\"\ninsecure-http = true\nheartbeat-interval = \"2s\"\n\
             alert-retention = \"30d\"\nalert-retention-max = 5000\ndata-dir = {:?}\n",
            from_file.display().to_string()
        ),
    )
    .expect("write settings");
    let mut server = ringfence()
        .args(["server", "--config"])
        .arg(&settings)
        .env("RINGFENCE_DATA_DIR", &from_env)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start server");
    let mut line = String::new();
    BufReader::new(server.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("first line");
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        line.contains("listening on http://127.0.0.1:"),
        "the file's listen and insecure-http were not used: {line:?}"
    );
    assert!(
        from_env.exists(),
        "the data directory from RINGFENCE_DATA_DIR"
    );
    assert!(
        !from_file.exists(),
        "RINGFENCE_DATA_DIR must win over the file's data-dir"
    );
}

#[test]
fn a_settings_file_with_an_unknown_key_or_a_bad_value_stops_the_service() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (text, expect) in [
        ("requre-agent-certs = true\n", "`requre-agent-certs`"),
        ("heartbeat-interval = 5\n", "needs a unit"),
        ("[listen]\nport = 7700\n", "a table"),
    ] {
        let settings = dir.path().join("server.toml");
        std::fs::write(&settings, text).expect("write settings");
        let out = ringfence()
            .args(["server", "--data-dir"])
            .arg(dir.path().join("data"))
            .arg("--config")
            .arg(&settings)
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {stderr}");
        assert!(
            stderr.contains(expect) && stderr.contains("server.toml"),
            "{text}: {stderr}"
        );
    }
    let out = ringfence()
        .args(["agent", "--config"])
        .arg(dir.path().join("missing.toml"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("missing.toml"),
        "{out:?}"
    );
}
