//! Server CPU time over the measured window, read from `/proc/PID/stat` (user + system time of every thread of
//! the process). Less sensitive to a noisy shared machine than calls/s, and it counts only the window: set-up
//! calls and the warm-up are left out, which a script reading /proc before and after the whole run cannot do.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::load::BenchError;

/// CPU time of `pids` (summed: a server may be several processes, e.g. a service and its risk service) between
/// `from` and `to`, measured by a task that wakes at both instants.
pub(crate) struct Window(JoinHandle<Result<Duration, BenchError>>);

impl Window {
    /// Starts measuring; `None` when no process is given.
    pub(crate) fn spawn(pids: &[u32], from: Instant, to: Instant) -> Option<Self> {
        if pids.is_empty() {
            return None;
        }
        let pids = pids.to_vec();
        Some(Self(tokio::spawn(async move {
            tokio::time::sleep_until(from).await;
            let before = total(&pids)?;
            tokio::time::sleep_until(to).await;
            let after = total(&pids)?;
            Ok(after.saturating_sub(before))
        })))
    }

    /// The CPU time the processes spent in the window.
    pub(crate) async fn finish(self) -> Result<Duration, BenchError> {
        self.0.await.expect("server CPU task")
    }
}

/// User + system time of every process in `pids`.
fn total(pids: &[u32]) -> Result<Duration, BenchError> {
    pids.iter().map(|&pid| cpu_time(pid)).sum()
}

/// User + system time of process `pid`, all threads.
pub fn cpu_time(pid: u32) -> Result<Duration, BenchError> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).map_err(|e| BenchError::ServerCpu(format!("cannot read {path}: {e}")))?;
    ticks_to_duration(parse_ticks(&stat).ok_or_else(|| BenchError::ServerCpu(format!("cannot parse {path}")))?)
}

/// utime + stime (fields 14 and 15) of a `/proc/PID/stat` line. The second field, the command name in
/// parentheses, may itself hold spaces and parentheses, so the fields are counted after its last `)`.
fn parse_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace().skip(11); // field 3 (state) is the first after ')'
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn ticks_to_duration(ticks: u64) -> Result<Duration, BenchError> {
    let per_second = rustix::param::clock_ticks_per_second();
    if per_second == 0 {
        return Err(BenchError::ServerCpu("the clock tick rate is unknown".into()));
    }
    Ok(Duration::from_micros(ticks * 1_000_000 / per_second))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_counted_after_the_command_name() {
        let stat = "4242 (tokio (rt) 1) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0 1234 0 0";
        assert_eq!(parse_ticks(stat), Some(325));
        assert_eq!(parse_ticks("garbage"), None);
    }

    #[test]
    fn this_process_has_spent_some_cpu() {
        let spent = cpu_time(std::process::id()).expect("own /proc entry");
        let busy = (0..2_000_000u64).fold(0u64, |a, b| a.wrapping_add(b * b));
        assert!(busy > 0);
        assert!(cpu_time(std::process::id()).expect("own /proc entry") >= spent);
        assert!(matches!(cpu_time(u32::MAX), Err(BenchError::ServerCpu(_))));
    }
}
