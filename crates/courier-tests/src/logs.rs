//! A child process's log lines (its stderr), read by a thread as they come so the child never blocks on a full
//! pipe, and kept for tests to wait on and search.

use std::io::{BufRead, BufReader, Read};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The lines a process wrote so far; clones share them.
#[derive(Clone, Default)]
pub struct LogLines {
    shared: Arc<(Mutex<Vec<String>>, Condvar)>,
}

impl LogLines {
    /// Starts a thread reading `stream` line by line into the returned [`LogLines`] until it ends.
    pub fn capture(stream: impl Read + Send + 'static) -> Self {
        let lines = Self::default();
        let writer = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let (all, changed) = &*writer.shared;
                all.lock().expect("log lines").push(line);
                changed.notify_all();
            }
        });
        lines
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<String> {
        self.shared.0.lock().expect("log lines").clone()
    }

    /// The first line that `matches`, waiting for it as lines arrive.
    ///
    /// # Panics
    /// When no such line came within `timeout` (the message lists every line seen).
    pub fn wait_for(&self, timeout: Duration, what: &str, matches: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + timeout;
        let (all, changed) = &*self.shared;
        let mut lines = all.lock().expect("log lines");
        loop {
            if let Some(line) = lines.iter().find(|line| matches(line)) {
                return line.clone();
            }
            let left = end.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no log line {what} within {timeout:?}; the log:\n{}", lines.join("\n"));
            lines = changed.wait_timeout(lines, left).expect("log lines").0;
        }
    }
}
