//! Exec overhead of the BPF sensor: the median time of `fork`+`execve`+`wait` of `/bin/true`
//! with no sensor and with the sensor attached (and its ring buffer drained by a reader, as in
//! the agent), in alternating rounds of one run, printed as a ratio. Root; see
//! bench/RESULTS.md for the command.

use ringfence_bpf_sensor::{BpfConfig, BpfSensor};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const ROUNDS: usize = 6;
const EXECS: usize = 300;

fn execs(samples: &mut Vec<Duration>) {
    for _ in 0..EXECS {
        let started = Instant::now();
        let status = Command::new("/bin/true").status();
        samples.push(started.elapsed());
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("warning: /bin/true failed");
        }
    }
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort_unstable();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

fn main() -> ExitCode {
    let mut without = Vec::new();
    let mut with = Vec::new();
    let mut records = 0u64;
    let mut lost = 0u64;
    for _ in 0..ROUNDS {
        execs(&mut without);
        let mut sensor = match BpfSensor::load(&BpfConfig::default()) {
            Ok(sensor) => sensor,
            Err(error) => {
                eprintln!("error: the BPF sensor does not load: {error}");
                return ExitCode::FAILURE;
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let reader_stop = Arc::clone(&stop);
        let reader = std::thread::spawn(move || {
            let mut events = Vec::new();
            let mut count = 0u64;
            while !reader_stop.load(Ordering::Relaxed) {
                events.clear();
                if sensor.read(Duration::from_millis(20), &mut events).is_err() {
                    break;
                }
                count += events.len() as u64;
            }
            (count, sensor.lost().unwrap_or(0))
        });
        execs(&mut with);
        stop.store(true, Ordering::Relaxed);
        match reader.join() {
            Ok((count, round_lost)) => {
                records += count;
                lost += round_lost;
            }
            Err(_) => {
                eprintln!("error: the reader thread panicked");
                return ExitCode::FAILURE;
            }
        }
    }
    let (base, sensed) = (median(&mut without), median(&mut with));
    println!(
        "exec of /bin/true, median of {} each: no sensor {:?}, BPF sensor {:?}, ratio {:.3} \
         ({records} records read, {lost} lost)",
        ROUNDS * EXECS,
        base,
        sensed,
        sensed.as_secs_f64() / base.as_secs_f64().max(1e-9)
    );
    ExitCode::SUCCESS
}
