//! Which rule sets run and how: one active set, enforced for every account, and an optional candidate that runs
//! beside it in shadow (scored and logged, never enforced) or is enforced for a stable share of accounts.
//!
//! A [`Snapshot`] is everything one Score call needs (the rule sets, the rollout resolved to them, the counters of
//! this rollout). It is immutable and replaced whole by a reload or a rollout switch, so the hot path takes no lock
//! beyond cloning an `Arc`, and a call never sees half of a change.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::rules::{Decision, RuleSet, MAX_VELOCITY_RULES_PER_SET};

/// How a candidate runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CandidateMode {
    /// Scored and logged for every account, never enforced.
    Shadow,
    /// Enforced for the accounts whose [`share_bucket`] is below this (0 to 100); in shadow for the others.
    Percentage(u8),
}

/// A switch asked for by SetRollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    /// Make the version the candidate in this mode.
    Candidate(CandidateMode),
    /// Make the version the active one, and drop any candidate (promotion, or rollback to an earlier version).
    Enforce,
}

/// A rollout by version names, as the file or SetRollout states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutSpec {
    /// Enforced for every account outside a percentage candidate's share.
    pub active: String,
    /// The candidate and how it runs.
    pub candidate: Option<(String, CandidateMode)>,
}

impl RolloutSpec {
    /// Only `active`, no candidate.
    pub fn active(version: impl Into<String>) -> Self {
        Self { active: version.into(), candidate: None }
    }

    /// This rollout with `version` switched. Whether the version is loaded is checked by [`Snapshot::switched`].
    pub fn switched(&self, version: &str, switch: Switch) -> Result<Self, RolloutError> {
        match switch {
            Switch::Enforce => Ok(Self::active(version)),
            Switch::Candidate(_) if version == self.active => Err(RolloutError::CandidateIsActive(version.into())),
            Switch::Candidate(mode) => {
                Ok(Self { active: self.active.clone(), candidate: Some((version.into(), mode)) })
            }
        }
    }
}

/// A rollout that cannot apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RolloutError {
    /// No loaded rule set has this version.
    #[error("no rule set with version {0:?} is loaded")]
    UnknownVersion(String),
    /// A candidate must differ from the active set.
    #[error("rule set {0:?} is the active one; a candidate must be another version")]
    CandidateIsActive(String),
}

/// The candidate, resolved.
#[derive(Debug)]
pub struct Candidate {
    /// Its rule set.
    pub set: Arc<RuleSet>,
    /// How it runs.
    pub mode: CandidateMode,
}

/// The rules in force, resolved for the hot path. Replaced whole; never changed in place.
#[derive(Debug)]
pub struct Snapshot {
    /// Every loaded rule set, in file order.
    pub sets: Vec<Arc<RuleSet>>,
    /// The rollout by names.
    pub spec: RolloutSpec,
    /// The active set.
    pub active: Arc<RuleSet>,
    /// The candidate, if any.
    pub candidate: Option<Candidate>,
    /// The distinct velocity windows (whole milliseconds) of the active and candidate sets: what is counted per
    /// call. At most `2 * MAX_VELOCITY_RULES_PER_SET`.
    pub windows: Vec<u64>,
    /// Attempt times to remember per account for the sets that run.
    pub attempts_needed: usize,
    /// This rollout's counters; a new rollout starts new ones.
    pub stats: RolloutStats,
    /// When this rollout took effect (microseconds since the epoch).
    pub since_us: i64,
    /// When `sets` were loaded.
    pub loaded_at_us: i64,
}

/// The most distinct windows one call counts.
pub const MAX_WINDOWS: usize = 2 * MAX_VELOCITY_RULES_PER_SET;

impl Snapshot {
    /// Resolves `spec` against `sets`, loaded at `loaded_at_us`; the rollout takes effect at `now_us`.
    pub fn new(
        sets: Vec<Arc<RuleSet>>,
        spec: RolloutSpec,
        loaded_at_us: i64,
        now_us: i64,
    ) -> Result<Self, RolloutError> {
        let find = |version: &str| {
            sets.iter()
                .find(|set| set.version == version)
                .cloned()
                .ok_or_else(|| RolloutError::UnknownVersion(version.into()))
        };
        let active = find(&spec.active)?;
        let candidate = match &spec.candidate {
            Some((version, _)) if *version == spec.active => {
                return Err(RolloutError::CandidateIsActive(version.clone()))
            }
            Some((version, mode)) => Some(Candidate { set: find(version)?, mode: *mode }),
            None => None,
        };
        let running = std::iter::once(&active).chain(candidate.iter().map(|c| &c.set));
        let mut windows: Vec<u64> =
            running.clone().flat_map(|set| set.velocity_windows()).map(|w| w.as_millis() as u64).collect();
        windows.sort_unstable();
        windows.dedup();
        let attempts_needed = running.map(|set| set.attempts_needed()).max().unwrap_or(0);
        Ok(Self {
            sets,
            spec,
            active,
            candidate,
            windows,
            attempts_needed,
            stats: RolloutStats::default(),
            since_us: now_us,
            loaded_at_us,
        })
    }

    /// The same rule sets under another rollout, from `now_us`, with fresh counters.
    pub fn switched(&self, spec: RolloutSpec, now_us: i64) -> Result<Self, RolloutError> {
        Self::new(self.sets.clone(), spec, self.loaded_at_us, now_us)
    }

    /// A loaded rule set by version.
    pub fn find(&self, version: &str) -> Option<&Arc<RuleSet>> {
        self.sets.iter().find(|set| set.version == version)
    }

    /// For one account: the set that decides, the set that runs in shadow (if any), and whether the deciding one
    /// is the candidate.
    pub fn roles(&self, account_id: &str) -> (&Arc<RuleSet>, Option<&Arc<RuleSet>>, bool) {
        match &self.candidate {
            None => (&self.active, None, false),
            Some(Candidate { set, mode: CandidateMode::Shadow }) => (&self.active, Some(set), false),
            Some(Candidate { set, mode: CandidateMode::Percentage(percent) }) => {
                if share_bucket(&set.version, account_id) < *percent {
                    (set, Some(&self.active), true)
                } else {
                    (&self.active, Some(set), false)
                }
            }
        }
    }
}

/// The account's bucket, 0 to 99, for a percentage rollout of `version`: a pure function of the two, so an account
/// stays on the same side for as long as the rollout lasts, across calls, processes and restarts, and raising the
/// percentage only adds accounts. The version is mixed in so each rollout picks its own share of accounts rather
/// than always the same ones.
pub fn share_bucket(version: &str, account_id: &str) -> u8 {
    // FNV-1a: specified, stable across Rust versions and platforms (std's hashers are not), and cheap.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in version.bytes().chain([0xff]).chain(account_id.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // FNV's low bits mix poorly for inputs that differ only at the end; the MurmurHash3 finaliser spreads them.
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^= hash >> 33;
    (hash % 100) as u8
}

/// Counters of one rollout, updated with relaxed atomics: each is exact, they are read together only for reports.
#[derive(Debug, Default)]
pub struct RolloutStats {
    evaluations: AtomicU64,
    decided_by_candidate: AtomicU64,
    shadow_evaluations: AtomicU64,
    disagreements: AtomicU64,
    shadow_stricter: AtomicU64,
    shadow_more_lenient: AtomicU64,
}

/// A reading of [`RolloutStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsReading {
    /// Score calls decided.
    pub evaluations: u64,
    /// Of them, decided by the candidate.
    pub decided_by_candidate: u64,
    /// Score calls that also ran a set in shadow.
    pub shadow_evaluations: u64,
    /// Shadow decisions that differed from the enforced one.
    pub disagreements: u64,
    /// Of them, stricter than the enforced one.
    pub shadow_stricter: u64,
    /// Of them, more lenient.
    pub shadow_more_lenient: u64,
}

impl RolloutStats {
    /// Counts one Score call.
    pub fn record(&self, enforced: Decision, shadow: Option<Decision>, decided_by_candidate: bool) {
        self.evaluations.fetch_add(1, Ordering::Relaxed);
        if decided_by_candidate {
            self.decided_by_candidate.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(shadow) = shadow {
            self.shadow_evaluations.fetch_add(1, Ordering::Relaxed);
            if shadow != enforced {
                self.disagreements.fetch_add(1, Ordering::Relaxed);
                let side = if shadow > enforced { &self.shadow_stricter } else { &self.shadow_more_lenient };
                side.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The counts now.
    pub fn read(&self) -> StatsReading {
        StatsReading {
            evaluations: self.evaluations.load(Ordering::Relaxed),
            decided_by_candidate: self.decided_by_candidate.load(Ordering::Relaxed),
            shadow_evaluations: self.shadow_evaluations.load(Ordering::Relaxed),
            disagreements: self.disagreements.load(Ordering::Relaxed),
            shadow_stricter: self.shadow_stricter.load(Ordering::Relaxed),
            shadow_more_lenient: self.shadow_more_lenient.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_buckets_are_stable_and_spread() {
        // Pinned values: a change to the hash would silently move accounts between sides of live rollouts.
        assert_eq!(share_bucket("v2", "acct_1"), share_bucket("v2", "acct_1"));
        let pinned: Vec<u8> = ["acct_1", "acct_2", "acct_3"].iter().map(|a| share_bucket("v2", a)).collect();
        assert_eq!(pinned, PINNED);
        let mut counts = [0u32; 100];
        for i in 0..100_000 {
            counts[usize::from(share_bucket("v2", &format!("acct_{i:032x}")))] += 1;
        }
        // 1,000 expected per bucket; a fair hash stays well within +-20 %.
        assert!(counts.iter().all(|&n| (800..1200).contains(&n)), "{counts:?}");
    }

    const PINNED: [u8; 3] = [23, 56, 71];

    #[test]
    fn switches() {
        let spec = RolloutSpec::active("v1");
        let shadow = spec.switched("v2", Switch::Candidate(CandidateMode::Shadow)).unwrap();
        assert_eq!(shadow.candidate, Some(("v2".into(), CandidateMode::Shadow)));
        assert_eq!(shadow.switched("v2", Switch::Enforce).unwrap(), RolloutSpec::active("v2"));
        assert_eq!(shadow.switched("v1", Switch::Enforce).unwrap(), RolloutSpec::active("v1"));
        assert_eq!(
            spec.switched("v1", Switch::Candidate(CandidateMode::Percentage(5))),
            Err(RolloutError::CandidateIsActive("v1".into()))
        );
    }
}
