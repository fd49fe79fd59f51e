//! The demo's terminal output: narration lines with a timestamp, and a live status line at
//! the bottom that is redrawn in place on a terminal. Piped, there is no colour and no
//! redrawing: the status is printed as a plain line every few seconds instead.

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where the demo writes.
pub struct Screen {
    tty: bool,
    start: Instant,
    state: Mutex<State>,
}

struct State {
    status: String,
    last_plain_status: Instant,
}

/// Colours for parts of a line.
#[derive(Clone, Copy)]
pub enum Tone {
    /// A step's heading.
    Step,
    /// A good outcome.
    Good,
    /// A bad outcome.
    Bad,
    /// A name worth noticing (the leader).
    Name,
    /// Less important detail.
    Dim,
}

impl Screen {
    /// Colour and redrawing when stdout is a terminal and `NO_COLOR` is unset.
    pub fn new(tty: bool) -> Screen {
        Screen {
            tty,
            start: Instant::now(),
            state: Mutex::new(State {
                status: String::new(),
                last_plain_status: Instant::now(),
            }),
        }
    }

    /// `text` in `tone` (plain when piped).
    pub fn paint(&self, tone: Tone, text: &str) -> String {
        if !self.tty {
            return text.to_string();
        }
        let code = match tone {
            Tone::Step => "1;36",
            Tone::Good => "1;32",
            Tone::Bad => "1;31",
            Tone::Name => "1;33",
            Tone::Dim => "2",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }

    /// One narration line.
    pub fn say(&self, text: &str) {
        let t = format!("{:6.1}s", self.start.elapsed().as_secs_f64());
        let mut state = self.lock();
        let mut out = std::io::stdout().lock();
        if self.tty {
            let _ = write!(
                out,
                "\r\x1b[2K{}  {text}\n{}",
                self.paint(Tone::Dim, &t),
                state.status
            );
        } else {
            let _ = writeln!(out, "{t}  {text}");
            state.last_plain_status = Instant::now();
        }
        let _ = out.flush();
    }

    /// Replaces the live status line.
    pub fn status(&self, text: &str) {
        let mut state = self.lock();
        if self.tty {
            state.status = text.to_string();
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "\r\x1b[2K{text}");
            let _ = out.flush();
        } else if state.last_plain_status.elapsed() >= Duration::from_secs(5) {
            state.last_plain_status = Instant::now();
            let t = format!("{:6.1}s", self.start.elapsed().as_secs_f64());
            println!("{t}  [status] {text}");
        }
    }

    /// Ends the live line (before the program exits).
    pub fn done(&self) {
        let mut state = self.lock();
        if self.tty && !state.status.is_empty() {
            state.status.clear();
            print!("\r\x1b[2K");
            let _ = std::io::stdout().flush();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}
