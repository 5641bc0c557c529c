//! The live timeline: one line per thing that happened, with the time since the start, on
//! standard output with the summary after it. Colours on a terminal, plain text otherwise (and
//! nothing at all with `--json`, where stdout is the summary alone).

use std::io::{IsTerminal, Write};
use std::time::Instant;

#[derive(Debug, Clone, Copy)]
pub enum Tone {
    Step,
    Good,
    Bad,
    Note,
}

pub struct Timeline {
    started: Instant,
    colour: bool,
    quiet: bool,
}

impl Timeline {
    pub fn new(quiet: bool) -> Timeline {
        Timeline {
            started: Instant::now(),
            colour: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
            quiet,
        }
    }

    pub fn seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Writes one line to standard output (nothing with `--json`).
    pub fn say(&self, tone: Tone, message: impl AsRef<str>) {
        if self.quiet {
            return;
        }
        let (start, end) = match (self.colour, tone) {
            (false, _) => ("", ""),
            (true, Tone::Step) => ("\x1b[1m", "\x1b[0m"),
            (true, Tone::Good) => ("\x1b[32m", "\x1b[0m"),
            (true, Tone::Bad) => ("\x1b[31m", "\x1b[0m"),
            (true, Tone::Note) => ("\x1b[2m", "\x1b[0m"),
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "[{:>6.1}s] {start}{}{end}",
            self.seconds(),
            message.as_ref()
        );
    }
}
