//! `faulty`: an engine that fails on purpose, so every containment path can be tested.
//!
//! Its content is one word choosing what it does on every event (or, with a second word, only
//! on exec events whose path ends with it; other events are allowed):
//! `ok` (allow), `trap` (unreachable), `loop` (never returns), `oom` (allocates without bound),
//! `slow` (busy for twenty times the host's deadline), `panic` (Rust panic), and `cf291`, modelled on
//! CrowdStrike's Channel File 291: a template interpreter that expects 21 input fields is given a
//! template with 20, reads the 21st slot and follows it as a pointer, far outside memory.

wit_bindgen::generate!({
    path: "../../wit/0.1",
    world: "engine",
});

use exports::ringfence::engine::detector::Guest;
use ringfence::engine::clock;
use ringfence::engine::types::{Action, ContentError, ContentInfo, Event, Severity, Verdict};
use std::cell::Cell;

#[derive(Clone, Copy)]
enum Mode {
    Ok,
    Trap,
    Loop,
    Oom,
    Slow,
    Panic,
    Cf291,
}

thread_local! {
    static MODE: Cell<Mode> = const { Cell::new(Mode::Ok) };
    static ONLY_EXE_SUFFIX: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
    static DEADLINE_NS: Cell<u64> = const { Cell::new(5_000_000) };
}

/// The template a channel file describes: 20 fields, each an address of a value in the event.
struct Template {
    fields: [u32; 20],
}

/// Reads the field the detection logic asks for. The logic asks for field 21; nothing checks.
#[inline(never)]
fn parse_template(template: &Template, wanted: usize) -> u32 {
    let slot = template.fields.as_ptr().wrapping_add(wanted);
    // The slot past the end holds whatever follows the table; we model the garbage the real
    // sensor found there with an address beyond the end of the 4 GiB wasm address space.
    let garbage = std::hint::black_box(slot as usize | 0xFFFF_0000);
    let pointer = garbage as *const u32;
    #[allow(unsafe_code, reason = "the out-of-bounds read is the bug this engine models")]
    // SAFETY: this is deliberately unsound: reading an unmapped address is the bug being
    // modelled. In wasm it is an out-of-bounds load, which the host turns into a trap.
    unsafe {
        pointer.read_volatile()
    }
}

#[inline(never)]
fn run_channel_file(event: &Event) -> Verdict {
    let template = Template {
        fields: std::hint::black_box([0; 20]),
    };
    let value = parse_template(&template, 21);
    let _ = event;
    verdict(if value == 0 { Action::Allow } else { Action::Observe })
}

#[inline(never)]
fn spin_forever() -> ! {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

#[inline(never)]
fn allocate_without_bound() -> Verdict {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = vec![0u8; 1 << 20];
        chunk[0] = 1;
        hoard.push(std::hint::black_box(chunk));
    }
}

#[inline(never)]
fn busy_for(ns: u64) {
    let start = clock::monotonic_ns();
    while clock::monotonic_ns().saturating_sub(start) < ns {
        std::hint::spin_loop();
    }
}

fn verdict(action: Action) -> Verdict {
    Verdict {
        action,
        rule_id: "faulty".to_owned(),
        severity: Severity::Info,
        message: String::new(),
        tags: Vec::new(),
    }
}

fn selected(event: &Event) -> bool {
    ONLY_EXE_SUFFIX.with_borrow(|suffix| match (suffix, event) {
        (None, _) => true,
        (Some(suffix), Event::Exec(exec)) => exec.exe.ends_with(suffix.as_str()),
        (Some(_), _) => false,
    })
}

fn on_event(event: &Event) -> Verdict {
    if !selected(event) {
        return verdict(Action::Allow);
    }
    match MODE.get() {
        Mode::Ok => verdict(Action::Allow),
        Mode::Trap => core::arch::wasm32::unreachable(),
        Mode::Loop => spin_forever(),
        Mode::Oom => allocate_without_bound(),
        Mode::Slow => {
            // Deadlines count the CPU time the caller's thread gets: twenty deadlines of wall
            // time hold more than one deadline of CPU time even on a machine where the thread
            // gets a twentieth of a core.
            busy_for(DEADLINE_NS.get().saturating_mul(20));
            verdict(Action::Allow)
        }
        Mode::Panic => panic!("faulty engine: deliberate panic on a {} event", kind(event)),
        Mode::Cf291 => run_channel_file(event),
    }
}

fn kind(event: &Event) -> &'static str {
    match event {
        Event::Exec(_) => "exec",
        Event::Open(_) => "open",
        Event::Fork(_) => "fork",
        Event::Exit(_) => "exit",
    }
}

struct Faulty;

impl Guest for Faulty {
    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        for (key, value) in config {
            if key == "ringfence.deadline-us" {
                let us: u64 = value
                    .parse()
                    .map_err(|_| format!("ringfence.deadline-us is not a number: {value:?}"))?;
                DEADLINE_NS.set(us.saturating_mul(1000));
            }
        }
        Ok(())
    }

    fn load_content(content: Vec<u8>) -> Result<ContentInfo, ContentError> {
        let text = String::from_utf8_lossy(&content);
        let mut words = text.split_whitespace();
        let word = words.next().unwrap_or_default();
        let suffix = words.next().map(str::to_owned);
        if let Some(extra) = words.next() {
            return Err(ContentError {
                message: format!("unexpected {extra:?}; content is `<mode> [exe-suffix]`"),
                line: Some(1),
            });
        }
        let mode = match word {
            "ok" => Mode::Ok,
            "trap" => Mode::Trap,
            "loop" => Mode::Loop,
            "oom" => Mode::Oom,
            "slow" => Mode::Slow,
            "panic" => Mode::Panic,
            "cf291" => Mode::Cf291,
            other => {
                return Err(ContentError {
                    message: format!(
                        "unknown mode {other:?}; expected ok, trap, loop, oom, slow, panic or cf291"
                    ),
                    line: Some(1),
                });
            }
        };
        MODE.set(mode);
        ONLY_EXE_SUFFIX.set(suffix);
        Ok(ContentInfo {
            rules: 1,
            version: text.trim().to_owned(),
            warnings: Vec::new(),
        })
    }

    fn on_event(event: Event) -> Verdict {
        on_event(&event)
    }

    fn on_events(events: Vec<Event>) -> Vec<Verdict> {
        events.iter().map(on_event).collect()
    }
}

export!(Faulty);
