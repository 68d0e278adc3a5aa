//! Reading rule sets and a rollout from TOML (`rules.example.toml` documents every key).
//!
//! Everything is checked before anything is used: a file either loads whole or not at all, and its errors say
//! where. Syntax and type errors come from the TOML parser with their line and column; every other problem names
//! the rule set, the rule and the key, and all of them are reported at once, so a file is fixed in one round.
//! Unknown keys are errors too: a misspelt `deny_at` must not silently fall back to its default.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::{
    Condition, Effect, Rule, RuleSet, MAX_RULES_PER_SET, MAX_SCORE, MAX_VELOCITY_MAX, MAX_VELOCITY_RULES_PER_SET,
};
use crate::rollout::{CandidateMode, RolloutSpec};

/// How errors in the built-in rules name their origin.
pub const BUILTIN_ORIGIN: &str = "built-in rules";
const BUILTIN: &str = include_str!("builtin.toml");

const MAX_RULE_SETS: usize = 32;
const MAX_NAME_BYTES: usize = 64;
const MAX_REASON_CHARS: usize = 200;
const MAX_DENY_LIST: usize = 10_000;
const DEFAULT_REVIEW_AT: i64 = 500;
const DEFAULT_DENY_AT: i64 = 800;
const MIN_WINDOW: Duration = Duration::from_secs(1);
const MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);
const MAX_ACCOUNT_AGE: Duration = Duration::from_secs(3650 * 24 * 3600);

/// Rule sets and the rollout read from one file.
#[derive(Debug, Clone)]
pub struct LoadedRules {
    /// In file order.
    pub sets: Vec<Arc<RuleSet>>,
    /// The `[rollout]` table.
    pub rollout: RolloutSpec,
}

/// Rules that could not be loaded: where from, and every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {problem}")]
pub struct RulesError {
    /// `rules file PATH` or [`BUILTIN_ORIGIN`].
    pub origin: String,
    /// What is wrong: one problem, or a count followed by one indented problem per line.
    pub problem: String,
}

/// Reads and checks the rules file at `path`.
pub fn load_file(path: &Path) -> Result<LoadedRules, RulesError> {
    let origin = format!("rules file {}", path.display());
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, &origin),
        Err(error) => Err(RulesError { origin, problem: format!("cannot read it: {error}") }),
    }
}

/// The rules in force when no file is configured.
pub fn builtin() -> Result<LoadedRules, RulesError> {
    parse(BUILTIN, BUILTIN_ORIGIN)
}

/// Parses and checks rules from TOML text; `origin` names where it came from in errors.
pub fn parse(text: &str, origin: &str) -> Result<LoadedRules, RulesError> {
    let fail = |problem: String| RulesError { origin: origin.to_owned(), problem };
    let document: Document = toml::from_str(text).map_err(|e| fail(e.to_string().trim_end().to_owned()))?;
    let mut problems = Vec::new();
    // The rollout is checked against every version the file declares, valid or not: a rule set with a bad rule is
    // reported once, for its rule, not again as "not a version" from [rollout].
    let declared: Vec<String> = document.rule_set.iter().map(|set| set.version.clone()).collect();
    let sets = rule_sets(document.rule_set, &mut problems);
    let rollout = rollout(&document.rollout, &declared, &mut problems);
    match rollout {
        Some(rollout) if problems.is_empty() => {
            Ok(LoadedRules { sets: sets.into_iter().map(Arc::new).collect(), rollout })
        }
        _ if problems.len() == 1 => Err(fail(problems.remove(0))),
        _ => Err(fail(format!("{} problems:\n  {}", problems.len(), problems.join("\n  ")))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    rollout: FileRollout,
    #[serde(default)]
    rule_set: Vec<FileRuleSet>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRollout {
    active: String,
    candidate: Option<String>,
    mode: Option<FileMode>,
    percent: Option<i64>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum FileMode {
    Shadow,
    Percentage,
    Enforce,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRuleSet {
    version: String,
    #[serde(default = "default_review_at")]
    review_at: i64,
    #[serde(default = "default_deny_at")]
    deny_at: i64,
    #[serde(default)]
    amount_above: Vec<AmountAbove>,
    #[serde(default)]
    velocity: Vec<Velocity>,
    #[serde(default)]
    merchant_deny_list: Vec<MerchantDenyList>,
    #[serde(default)]
    first_merchant_use: Vec<FirstMerchantUse>,
    #[serde(default)]
    new_account: Vec<NewAccount>,
    #[serde(default)]
    drains_available: Vec<DrainsAvailable>,
}

fn default_review_at() -> i64 {
    DEFAULT_REVIEW_AT
}

fn default_deny_at() -> i64 {
    DEFAULT_DENY_AT
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AmountAbove {
    id: String,
    reason: Option<String>,
    score: Option<i64>,
    deny: Option<bool>,
    amount: i64,
    currency: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Velocity {
    id: String,
    reason: Option<String>,
    score: Option<i64>,
    deny: Option<bool>,
    max: i64,
    #[serde(with = "humantime_serde")]
    window: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MerchantDenyList {
    id: String,
    reason: Option<String>,
    score: Option<i64>,
    deny: Option<bool>,
    merchants: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FirstMerchantUse {
    id: String,
    reason: Option<String>,
    score: Option<i64>,
    deny: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAccount {
    id: String,
    reason: Option<String>,
    score: Option<i64>,
    deny: Option<bool>,
    #[serde(with = "humantime_serde")]
    younger_than: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DrainsAvailable {
    id: String,
    reason: Option<String>,
    score: Option<i64>,
    deny: Option<bool>,
    percent: i64,
}

/// The keys every kind of rule has.
struct Common<'a> {
    id: &'a str,
    reason: Option<&'a str>,
    score: Option<i64>,
    deny: Option<bool>,
}

/// One kind of rule: its table name, its common keys, and its condition (checked) with the default reason text.
trait RuleKind {
    const KIND: &'static str;
    fn common(&self) -> Common<'_>;
    fn condition(&self, problems: &mut Problems<'_>) -> Option<(Condition, String)>;
}

/// Problems found, each prefixed with where it is.
struct Problems<'a> {
    context: String,
    all: &'a mut Vec<String>,
}

impl Problems<'_> {
    fn add(&mut self, problem: impl std::fmt::Display) {
        self.all.push(format!("{}: {problem}", self.context));
    }
}

impl RuleKind for AmountAbove {
    const KIND: &'static str = "amount_above";
    fn common(&self) -> Common<'_> {
        Common { id: &self.id, reason: self.reason.as_deref(), score: self.score, deny: self.deny }
    }
    fn condition(&self, problems: &mut Problems<'_>) -> Option<(Condition, String)> {
        let mut ok = true;
        if self.amount < 0 {
            problems.add(format!("`amount` must be zero or more (minor units), got {}", self.amount));
            ok = false;
        }
        if let Some(currency) = &self.currency {
            if !is_currency_shape(currency) {
                problems.add(format!("`currency` must be an ISO 4217 code such as \"USD\", got {currency:?}"));
                ok = false;
            }
        }
        let description = match &self.currency {
            Some(currency) => format!("amount above {} {currency}", self.amount),
            None => format!("amount above {}", self.amount),
        };
        ok.then(|| (Condition::AmountAbove { amount: self.amount, currency: self.currency.clone() }, description))
    }
}

impl RuleKind for Velocity {
    const KIND: &'static str = "velocity";
    fn common(&self) -> Common<'_> {
        Common { id: &self.id, reason: self.reason.as_deref(), score: self.score, deny: self.deny }
    }
    fn condition(&self, problems: &mut Problems<'_>) -> Option<(Condition, String)> {
        let mut ok = true;
        if !(1..=i64::from(MAX_VELOCITY_MAX)).contains(&self.max) {
            problems.add(format!("`max` must be 1 to {MAX_VELOCITY_MAX}, got {}", self.max));
            ok = false;
        }
        let whole_ms = Duration::from_millis(self.window.as_millis() as u64) == self.window;
        if !(MIN_WINDOW..=MAX_WINDOW).contains(&self.window) || !whole_ms {
            problems.add(format!(
                "`window` must be whole milliseconds from 1s to 24h, got {}",
                humantime::format_duration(self.window)
            ));
            ok = false;
        }
        let description = format!("more than {} attempts in {}", self.max, humantime::format_duration(self.window));
        ok.then_some((Condition::Velocity { max: self.max as u32, window: self.window }, description))
    }
}

impl RuleKind for MerchantDenyList {
    const KIND: &'static str = "merchant_deny_list";
    fn common(&self) -> Common<'_> {
        Common { id: &self.id, reason: self.reason.as_deref(), score: self.score, deny: self.deny }
    }
    fn condition(&self, problems: &mut Problems<'_>) -> Option<(Condition, String)> {
        let mut ok = true;
        if self.merchants.is_empty() || self.merchants.len() > MAX_DENY_LIST {
            problems
                .add(format!("`merchants` must list 1 to {MAX_DENY_LIST} merchant ids, got {}", self.merchants.len()));
            ok = false;
        }
        for (i, merchant) in self.merchants.iter().enumerate() {
            if !is_merchant_id(merchant) {
                problems.add(format!(
                    "`merchants[{i}]` must be 1 to 64 of A-Z a-z 0-9 _ - (a merchant id), got {merchant:?}"
                ));
                ok = false;
            }
        }
        let merchants: BTreeSet<String> = self.merchants.iter().cloned().collect();
        ok.then(|| (Condition::MerchantDenyList(merchants), "merchant is on a deny list".to_owned()))
    }
}

impl RuleKind for FirstMerchantUse {
    const KIND: &'static str = "first_merchant_use";
    fn common(&self) -> Common<'_> {
        Common { id: &self.id, reason: self.reason.as_deref(), score: self.score, deny: self.deny }
    }
    fn condition(&self, _: &mut Problems<'_>) -> Option<(Condition, String)> {
        Some((Condition::FirstMerchantUse, "first attempt by this account at this merchant".to_owned()))
    }
}

impl RuleKind for NewAccount {
    const KIND: &'static str = "new_account";
    fn common(&self) -> Common<'_> {
        Common { id: &self.id, reason: self.reason.as_deref(), score: self.score, deny: self.deny }
    }
    fn condition(&self, problems: &mut Problems<'_>) -> Option<(Condition, String)> {
        if !(MIN_WINDOW..=MAX_ACCOUNT_AGE).contains(&self.younger_than) {
            let got = humantime::format_duration(self.younger_than);
            problems.add(format!("`younger_than` must be from 1s to 3650days, got {got}"));
            return None;
        }
        let description = format!("account opened less than {} ago", humantime::format_duration(self.younger_than));
        Some((Condition::NewAccount { younger_than: self.younger_than }, description))
    }
}

impl RuleKind for DrainsAvailable {
    const KIND: &'static str = "drains_available";
    fn common(&self) -> Common<'_> {
        Common { id: &self.id, reason: self.reason.as_deref(), score: self.score, deny: self.deny }
    }
    fn condition(&self, problems: &mut Problems<'_>) -> Option<(Condition, String)> {
        if !(1..=100).contains(&self.percent) {
            problems.add(format!("`percent` must be 1 to 100, got {}", self.percent));
            return None;
        }
        let description = format!("amount is at least {}% of the available funds", self.percent);
        Some((Condition::DrainsAvailable { percent: self.percent as u8 }, description))
    }
}

fn rule_sets(files: Vec<FileRuleSet>, all: &mut Vec<String>) -> Vec<RuleSet> {
    if files.is_empty() {
        all.push("no [[rule_set]]: at least one rule set is needed".into());
    } else if files.len() > MAX_RULE_SETS {
        all.push(format!("at most {MAX_RULE_SETS} [[rule_set]] tables, got {}", files.len()));
    }
    let mut versions = HashSet::new();
    let mut sets = Vec::with_capacity(files.len());
    for (index, file) in files.into_iter().enumerate() {
        let context = if file.version.is_empty() {
            format!("rule_set #{}", index + 1)
        } else {
            format!("rule_set {:?}", file.version)
        };
        let mut problems = Problems { context, all };
        if !is_name(&file.version) {
            problems.add(format!("`version` must be 1 to {MAX_NAME_BYTES} of A-Z a-z 0-9 . _ -"));
        } else if !versions.insert(file.version.clone()) {
            problems.add("`version` is used by an earlier rule set");
        }
        if let Some(set) = rule_set(file, &mut problems) {
            sets.push(set);
        }
    }
    sets
}

fn rule_set(file: FileRuleSet, problems: &mut Problems<'_>) -> Option<RuleSet> {
    let before = problems.all.len();
    for (key, value) in [("review_at", file.review_at), ("deny_at", file.deny_at)] {
        if !(1..=i64::from(MAX_SCORE)).contains(&value) {
            problems.add(format!("`{key}` must be 1 to {MAX_SCORE}, got {value}"));
        }
    }
    if file.review_at > file.deny_at {
        problems.add(format!("`review_at` ({}) must not be above `deny_at` ({})", file.review_at, file.deny_at));
    }
    let mut rules = Vec::new();
    let mut ids = HashSet::new();
    compile_all(&file.amount_above, &mut rules, &mut ids, problems);
    compile_all(&file.velocity, &mut rules, &mut ids, problems);
    compile_all(&file.merchant_deny_list, &mut rules, &mut ids, problems);
    compile_all(&file.first_merchant_use, &mut rules, &mut ids, problems);
    compile_all(&file.new_account, &mut rules, &mut ids, problems);
    compile_all(&file.drains_available, &mut rules, &mut ids, problems);
    if rules.len() > MAX_RULES_PER_SET {
        problems.add(format!("at most {MAX_RULES_PER_SET} rules per rule set, got {}", rules.len()));
    }
    if file.velocity.len() > MAX_VELOCITY_RULES_PER_SET {
        problems.add(format!(
            "at most {MAX_VELOCITY_RULES_PER_SET} velocity rules per rule set, got {}",
            file.velocity.len()
        ));
    }
    (problems.all.len() == before).then_some(RuleSet {
        version: file.version,
        review_at: file.review_at as u16,
        deny_at: file.deny_at as u16,
        rules,
    })
}

fn compile_all<R: RuleKind>(
    files: &[R],
    rules: &mut Vec<Rule>,
    ids: &mut HashSet<String>,
    set_problems: &mut Problems<'_>,
) {
    for (index, file) in files.iter().enumerate() {
        let common = file.common();
        let context = if common.id.is_empty() {
            format!("{}, {} rule #{}", set_problems.context, R::KIND, index + 1)
        } else {
            format!("{}, {} rule {:?}", set_problems.context, R::KIND, common.id)
        };
        let mut problems = Problems { context, all: set_problems.all };
        if !is_name(common.id) {
            problems.add(format!("`id` must be 1 to {MAX_NAME_BYTES} of A-Z a-z 0-9 . _ -"));
        } else if !ids.insert(common.id.to_owned()) {
            problems.add("`id` is used by another rule of this rule set");
        }
        let effect = effect(&common, &mut problems);
        if let Some(reason) = common.reason {
            let chars = reason.chars().count();
            if chars == 0 || chars > MAX_REASON_CHARS || reason.chars().any(char::is_control) {
                problems.add(format!("`reason` must be 1 to {MAX_REASON_CHARS} characters, no control characters"));
            }
        }
        if let (Some(effect), Some((condition, default_reason))) = (effect, file.condition(&mut problems)) {
            let description = common.reason.map_or(default_reason, str::to_owned);
            rules.push(Rule { id: common.id.to_owned(), description, effect, condition });
        }
    }
}

/// Exactly one of `score = N` or `deny = true`.
fn effect(common: &Common<'_>, problems: &mut Problems<'_>) -> Option<Effect> {
    match (common.score, common.deny.unwrap_or(false)) {
        (Some(_), true) => problems.add("has both `score` and `deny = true`; a deny rule adds no score"),
        (Some(score), false) if (1..=i64::from(MAX_SCORE)).contains(&score) => {
            return Some(Effect::Score(score as u16))
        }
        (Some(score), false) => problems.add(format!("`score` must be 1 to {MAX_SCORE}, got {score}")),
        (None, true) => return Some(Effect::Deny),
        (None, false) => problems.add("needs `score = N` (1 to 1000) or `deny = true`"),
    }
    None
}

fn rollout(file: &FileRollout, declared: &[String], all: &mut Vec<String>) -> Option<RolloutSpec> {
    let mut problems = Problems { context: "[rollout]".into(), all };
    let loaded = |version: &str| declared.iter().any(|v| v == version);
    let known = declared;
    let before = problems.all.len();
    if !loaded(&file.active) {
        problems
            .add(format!("`active` = {:?} is not the version of a [[rule_set]] (versions: {known:?})", file.active));
    }
    let candidate = match (&file.candidate, file.mode, file.percent) {
        (None, None, None) => None,
        (None, _, _) => {
            problems.add("`mode` and `percent` need a `candidate`");
            None
        }
        (Some(candidate), mode, percent) => {
            if !loaded(candidate) {
                problems.add(format!(
                    "`candidate` = {candidate:?} is not the version of a [[rule_set]] (versions: {known:?})"
                ));
            } else if *candidate == file.active {
                problems.add("`candidate` must differ from `active`");
            }
            let mode = match (mode, percent) {
                (Some(FileMode::Shadow), None) => Some(CandidateMode::Shadow),
                (Some(FileMode::Percentage), Some(percent)) if (0..=100).contains(&percent) => {
                    Some(CandidateMode::Percentage(percent as u8))
                }
                (Some(FileMode::Percentage), Some(percent)) => {
                    problems.add(format!("`percent` must be 0 to 100, got {percent}"));
                    None
                }
                (Some(FileMode::Percentage), None) => {
                    problems.add("`mode = \"percentage\"` needs `percent` (0 to 100)");
                    None
                }
                (Some(FileMode::Shadow), Some(_)) => {
                    problems.add("`percent` goes only with `mode = \"percentage\"`");
                    None
                }
                (Some(FileMode::Enforce), _) => {
                    problems
                        .add(format!("to enforce {candidate:?}, set `active = {candidate:?}` (and drop `candidate`)"));
                    None
                }
                (None, _) => {
                    problems.add("a `candidate` needs `mode` = \"shadow\" or \"percentage\"");
                    None
                }
            };
            mode.map(|mode| (candidate.clone(), mode))
        }
    };
    (problems.all.len() == before).then(|| RolloutSpec { active: file.active.clone(), candidate })
}

/// Versions and rule ids: 1 to 64 of A-Z a-z 0-9 . _ - (safe in logs, metrics labels and URLs).
fn is_name(name: &str) -> bool {
    (1..=MAX_NAME_BYTES).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The shape PaymentService accepts for merchant ids: 1 to 64 of A-Z a-z 0-9 _ -.
pub(crate) fn is_merchant_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Three upper-case ASCII letters. Risk checks the shape only; PaymentService owns the list of currencies.
pub(crate) fn is_currency_shape(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())
}

#[cfg(test)]
mod tests;
