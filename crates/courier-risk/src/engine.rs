//! The risk engine: the rules in force, what risk remembers per account, and the clock, behind one `score` per
//! Authorize.
//!
//! One Score: `read the snapshot (an Arc clone under a read lock) -> record the attempt and read the account's
//! counts (one shard lock) -> evaluate the deciding set, and the shadow set if any (no allocation) -> remember a
//! first-used merchant unless denied (one shard lock, first uses only) -> count -> log a disagreement`.
//! Changes (a reload, a rollout switch) build a new snapshot beside the old one and swap it in; they are serialised
//! by their own mutex, so the hot path never waits for a file to be read.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::config::RiskConfig;
use crate::rollout::{RolloutError, RolloutSpec, Snapshot, Switch};
use crate::rules::{self, evaluate, Decision, Evaluation, Facts, LoadedRules, RuleSet, RulesError};
use crate::state::AccountStates;

/// The tracing target of rollout events and shadow decisions.
pub const LOG_TARGET: &str = "courier::risk";

/// One authorization attempt, as validated at the boundary.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    /// The account charged.
    pub account_id: &'a str,
    /// The merchant asking.
    pub merchant_id: &'a str,
    /// Minor units, more than zero.
    pub amount: i64,
    /// ISO 4217 code.
    pub currency: &'a str,
    /// When the account was opened, microseconds since the epoch, if the caller said.
    pub account_created_at_us: Option<i64>,
    /// The account's available amount before this attempt, if the caller said.
    pub available_amount: Option<i64>,
}

/// One rule set's verdict.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// The set that evaluated.
    pub set: Arc<RuleSet>,
    /// What it said.
    pub evaluation: Evaluation,
}

/// The outcome of one Score.
#[derive(Debug, Clone)]
pub struct Scored {
    /// The enforced verdict.
    pub enforced: Verdict,
    /// The verdict of the set that ran in shadow, if one did.
    pub shadow: Option<Verdict>,
    /// Whether the enforced set is the rollout's candidate.
    pub decided_by_candidate: bool,
}

/// How many loads of the rules file succeeded and failed since start (the first load included); watch it to learn
/// that the file watcher acted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Loads {
    /// Loads that put rules in force.
    pub succeeded: u64,
    /// Loads that left the rules in force unchanged.
    pub failed: u64,
}

/// Why the engine did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A `[risk]` setting is out of range.
    #[error("{0}")]
    Config(String),
    /// The rules file (or the built-in rules) did not load.
    #[error(transparent)]
    Rules(#[from] RulesError),
}

/// Why a reload did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReloadError {
    /// Nothing to reload from.
    #[error("no rules file is configured (`risk.rules_file`); the built-in rules are in force")]
    NoFile,
    /// The file did not load; the rules in force stay.
    #[error(transparent)]
    Rules(#[from] RulesError),
}

/// The rules in force and what risk remembers; share it in an `Arc`.
#[derive(Debug)]
pub struct RiskEngine {
    current: RwLock<Arc<Snapshot>>,
    admin: Mutex<Admin>,
    states: AccountStates,
    clock: Clock,
    rules_file: Option<PathBuf>,
    watch_interval: Duration,
    loads: watch::Sender<Loads>,
}

/// What changes to the rules need, serialised by one mutex.
#[derive(Debug, Default)]
struct Admin {
    /// The rules file's (modification time, size) at the last load attempt; `None` if it could not be read.
    seen: Option<(SystemTime, u64)>,
    /// Why the last load failed, if it failed after the rules in force were loaded.
    last_error: Option<String>,
}

impl RiskEngine {
    /// Loads the rules (the file named by `config`, or the built-in ones) and starts with empty account memory.
    /// A bad file is an error naming the problem: the service must not start on rules nobody meant.
    pub fn start(config: &RiskConfig, clock: Clock) -> Result<Arc<Self>, StartError> {
        config.validate().map_err(StartError::Config)?;
        let rules_file = (!config.rules_file.as_os_str().is_empty()).then(|| config.rules_file.clone());
        let seen = rules_file.as_deref().and_then(fingerprint);
        let loaded = match &rules_file {
            Some(path) => rules::load_file(path)?,
            None => rules::builtin()?,
        };
        let now = clock.now_us();
        let snapshot = resolve(loaded, now)?;
        log_in_force(&snapshot, rules_file.as_deref());
        let (loads, _) = watch::channel(Loads { succeeded: 1, failed: 0 });
        Ok(Arc::new(Self {
            current: RwLock::new(Arc::new(snapshot)),
            admin: Mutex::new(Admin { seen, last_error: None }),
            states: AccountStates::new(config.max_accounts, config.max_merchants_per_account),
            clock,
            rules_file,
            watch_interval: config.watch_interval,
            loads,
        }))
    }

    /// Scores one attempt and records it (see the module docs for the steps).
    pub fn score(&self, attempt: &Attempt<'_>) -> Scored {
        let snapshot = self.snapshot();
        let now_us = self.clock.now_us();
        let now_ms = u64::try_from(now_us / 1_000).unwrap_or(0);
        let keys = self.states.keys(attempt.account_id, attempt.merchant_id);
        let observed = self.states.observe(keys, now_ms, &snapshot.windows, snapshot.attempts_needed);
        let facts = Facts {
            amount: attempt.amount,
            currency: attempt.currency,
            merchant_id: attempt.merchant_id,
            first_use_of_merchant: observed.first_use_of_merchant,
            account_age_us: attempt.account_created_at_us.map(|created| now_us.saturating_sub(created)),
            available_amount: attempt.available_amount,
            attempts: observed.attempts(),
        };
        let (deciding, shadow, decided_by_candidate) = snapshot.roles(attempt.account_id);
        let enforced = evaluate(deciding, &facts);
        let shadow = shadow.map(|set| (set, evaluate(set, &facts)));
        // A denied attempt is not a use: a fraudster's second try at a new merchant must still count as a first.
        if observed.first_use_of_merchant && enforced.decision != Decision::Deny {
            self.states.remember_merchant(keys);
        }
        snapshot.stats.record(enforced.decision, shadow.map(|(_, s)| s.decision), decided_by_candidate);
        if let Some((set, evaluation)) = shadow {
            log_shadow(attempt, (deciding, &enforced), (set, &evaluation));
        }
        Scored {
            enforced: Verdict { set: deciding.clone(), evaluation: enforced },
            shadow: shadow.map(|(set, evaluation)| Verdict { set: set.clone(), evaluation }),
            decided_by_candidate,
        }
    }

    /// The rules in force now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        // The lock guards only an Arc swap, which cannot be left half done: a poisoned lock is still consistent.
        self.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Switches `version` at run time; returns the rollout before and after. Lasts until the next load.
    pub fn set_rollout(&self, version: &str, switch: Switch) -> Result<(Arc<Snapshot>, Arc<Snapshot>), RolloutError> {
        let _admin = self.admin();
        let before = self.snapshot();
        let spec = before.spec.switched(version, switch)?;
        let after = Arc::new(before.switched(spec, self.clock.now_us())?);
        self.swap(after.clone());
        tracing::info!(target: LOG_TARGET, version, ?switch, rollout = %describe(&after.spec), "rollout switched");
        Ok((before, after))
    }

    /// Reads the rules file now. On failure the rules in force stay, and the error is kept for GetRuleSet.
    pub fn reload(&self) -> Result<Arc<Snapshot>, ReloadError> {
        let path = self.rules_file.as_deref().ok_or(ReloadError::NoFile)?;
        let mut admin = self.admin();
        self.load(&mut admin, path)
    }

    /// Reloads if the rules file's modification time or size changed since the last attempt (the watcher's tick).
    pub fn reload_if_changed(&self) {
        let Some(path) = self.rules_file.as_deref() else { return };
        let mut admin = self.admin();
        if fingerprint(path) != admin.seen {
            // The outcome is logged and counted by `load`; nobody else is waiting for it.
            let _ = self.load(&mut admin, path);
        }
    }

    /// The rules file, if one is configured.
    pub fn rules_file(&self) -> Option<&Path> {
        self.rules_file.as_deref()
    }

    /// Why the last load failed, if it failed after the rules in force were loaded.
    pub fn last_reload_error(&self) -> Option<String> {
        self.admin().last_error.clone()
    }

    /// Load counts, updated after every load attempt.
    pub fn subscribe(&self) -> watch::Receiver<Loads> {
        self.loads.subscribe()
    }

    /// Accounts remembered now; never more than [`RiskEngine::account_capacity`].
    pub fn tracked_accounts(&self) -> usize {
        self.states.len()
    }

    /// The most accounts remembered at once.
    pub fn account_capacity(&self) -> usize {
        self.states.capacity()
    }

    /// Merchants remembered for one account.
    pub fn merchants_of(&self, account_id: &str) -> usize {
        self.states.merchants_of(account_id)
    }

    /// The engine's clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Starts polling the rules file (every `watch_interval`) on the current tokio runtime; `None` when there is no
    /// file or the interval is zero. The task ends when the engine is dropped.
    pub fn spawn_watcher(self: &Arc<Self>) -> Option<JoinHandle<()>> {
        let path = self.rules_file.as_ref()?;
        if self.watch_interval.is_zero() {
            return None;
        }
        tracing::info!(target: LOG_TARGET, file = %path.display(), interval = ?self.watch_interval, "watching the rules file");
        Some(crate::watch::spawn(Arc::downgrade(self), self.watch_interval))
    }

    fn load(&self, admin: &mut Admin, path: &Path) -> Result<Arc<Snapshot>, ReloadError> {
        admin.seen = fingerprint(path);
        let now = self.clock.now_us();
        match rules::load_file(path).and_then(|loaded| resolve(loaded, now)) {
            Ok(snapshot) => {
                let snapshot = Arc::new(snapshot);
                self.swap(snapshot.clone());
                admin.last_error = None;
                self.loads.send_modify(|loads| loads.succeeded += 1);
                log_in_force(&snapshot, Some(path));
                Ok(snapshot)
            }
            Err(error) => {
                tracing::error!(target: LOG_TARGET, %error, "rules not reloaded; the rules in force stay");
                admin.last_error = Some(error.to_string());
                self.loads.send_modify(|loads| loads.failed += 1);
                Err(error.into())
            }
        }
    }

    fn swap(&self, snapshot: Arc<Snapshot>) {
        let old = std::mem::replace(&mut *self.current.write().unwrap_or_else(PoisonError::into_inner), snapshot);
        // Dropped after the write lock is released (possibly the last reference to a large rule set).
        drop(old);
    }

    fn admin(&self) -> MutexGuard<'_, Admin> {
        self.admin.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Rules from a file, resolved; the file's rollout was checked against its rule sets when it was parsed.
fn resolve(loaded: LoadedRules, now_us: i64) -> Result<Snapshot, RulesError> {
    Snapshot::new(loaded.sets, loaded.rollout, now_us, now_us)
        .map_err(|e| RulesError { origin: "rules".into(), problem: e.to_string() })
}

/// The file's (modification time, size): a cheap test for "changed", read every watcher tick.
fn fingerprint(path: &Path) -> Option<(SystemTime, u64)> {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.modified().ok()?, metadata.len()))
}

fn describe(spec: &RolloutSpec) -> String {
    match &spec.candidate {
        None => format!("active {}", spec.active),
        Some((candidate, mode)) => format!("active {}, candidate {candidate} ({mode:?})", spec.active),
    }
}

fn log_in_force(snapshot: &Snapshot, file: Option<&Path>) {
    let versions: Vec<&str> = snapshot.sets.iter().map(|set| set.version.as_str()).collect();
    let source = file.map_or_else(|| rules::BUILTIN_ORIGIN.to_owned(), |path| path.display().to_string());
    tracing::info!(target: LOG_TARGET, %source, ?versions, rollout = %describe(&snapshot.spec), "risk rules in force");
}

fn log_shadow(attempt: &Attempt<'_>, enforced: (&RuleSet, &Evaluation), shadow: (&RuleSet, &Evaluation)) {
    let (enforced_set, enforced) = enforced;
    let (shadow_set, shadow) = shadow;
    if shadow.decision == enforced.decision {
        tracing::debug!(
            target: LOG_TARGET,
            account_id = attempt.account_id,
            merchant_id = attempt.merchant_id,
            enforced_version = %enforced_set.version,
            shadow_version = %shadow_set.version,
            decision = ?enforced.decision,
            enforced_score = enforced.score,
            shadow_score = shadow.score,
            "shadow decision agrees"
        );
    } else {
        tracing::info!(
            target: LOG_TARGET,
            account_id = attempt.account_id,
            merchant_id = attempt.merchant_id,
            amount = attempt.amount,
            currency = attempt.currency,
            enforced_version = %enforced_set.version,
            enforced_decision = ?enforced.decision,
            enforced_score = enforced.score,
            shadow_version = %shadow_set.version,
            shadow_decision = ?shadow.decision,
            shadow_score = shadow.score,
            "shadow decision differs"
        );
    }
}
