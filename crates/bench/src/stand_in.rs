//! A stand-in agent for guard tests and benchmarks (`ringfence guard test-child`): speaks the
//! real heartbeat (`GuardLink`) and fails on demand, differently on the current and the LKG
//! slot. It lives with the benchmarks because `ringfence guard bench` runs it on the operator's
//! hosts; the guard's CLI tests drive it through the same hidden subcommand.

use clap::{Args, ValueEnum};
use ringfence_protocol::guard_link::{GuardLink, SLOT_ENV, Slot};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// How the stand-in behaves on one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Say ready, then heartbeat forever.
    Ok,
    /// Exit with code 3 at once.
    Crash,
    /// Die by SIGSEGV at once.
    Segv,
    /// Say ready, then stop heartbeating and sleep forever.
    Hang,
    /// Say ready, heartbeat for a second, then exit with code 3.
    ReadyThenCrash,
}

/// Options for `ringfence guard test-child`.
#[derive(Debug, Args)]
pub struct Options {
    /// Behaviour on the current slot.
    #[arg(long, value_enum, default_value = "ok")]
    mode: Mode,
    /// Behaviour on the LKG slot.
    #[arg(long, value_enum, default_value = "ok")]
    lkg_mode: Mode,
    /// The slot, as the guard's argument template or environment passes it.
    #[arg(long, value_enum, env = SLOT_ENV, default_value = "current")]
    slot: Slot,
    /// Append `<event> <slot> <pid> <unix-nanos>` lines here.
    #[arg(long)]
    record: Option<PathBuf>,
}

fn record(path: Option<&PathBuf>, event: &str, slot: &str) {
    let Some(path) = path else { return };
    let nanos = ringfence_protocol::clock::unix_ns();
    let line = format!("{event} {slot} {} {nanos}\n", std::process::id());
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = f.write_all(line.as_bytes());
    }
}

/// Runs the stand-in until its mode ends it; the exit code is the one a crashing agent would have.
pub fn run(args: Options) -> anyhow::Result<ExitCode> {
    let slot = args.slot.as_str();
    let mode = match args.slot {
        Slot::Current => args.mode,
        Slot::Lkg => args.lkg_mode,
    };
    let link = GuardLink::from_env();
    let rec = args.record.as_ref();
    let serve = |for_at_most: Option<Duration>| {
        if let Some(link) = &link {
            link.ready();
        }
        record(rec, "serving", slot);
        let start = std::time::Instant::now();
        while for_at_most.is_none_or(|d| start.elapsed() < d) {
            if let Some(link) = &link {
                link.beat();
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    match mode {
        Mode::Ok => {
            serve(None);
            Ok(ExitCode::SUCCESS)
        }
        Mode::Crash => {
            record(rec, "crash", slot);
            Ok(ExitCode::from(3))
        }
        Mode::Segv => {
            record(rec, "crash", slot);
            // Default action, as a native agent that crashed would die.
            ringfence_sys::signals::die_by_signal(libc::SIGSEGV)
        }
        Mode::Hang => {
            if let Some(link) = &link {
                link.ready();
            }
            record(rec, "hang", slot);
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        Mode::ReadyThenCrash => {
            serve(Some(Duration::from_secs(1)));
            record(rec, "crash", slot);
            Ok(ExitCode::from(3))
        }
    }
}
