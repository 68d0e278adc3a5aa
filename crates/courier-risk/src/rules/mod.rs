//! Rule sets as data.
//!
//! - this module: a rule set once read and checked (the form the hot path evaluates),
//! - [`load_file`], [`parse`], [`builtin`]: reading rule sets and a rollout from TOML, every value checked, errors
//!   located,
//! - [`evaluate()`]: scoring one attempt against one rule set without allocating.
//!
//! A score is the sum of the contributions of the rules that fire, capped at [`MAX_SCORE`]. A rule with a deny
//! effect decides DENY on its own (and the score is then [`MAX_SCORE`]); otherwise the rule set's thresholds do.

mod evaluate;
mod file;

use std::collections::BTreeSet;
use std::time::Duration;

pub use evaluate::{evaluate, Evaluation, Facts};
pub use file::{builtin, load_file, parse, LoadedRules, RulesError, BUILTIN_ORIGIN};
pub(crate) use file::{is_currency_shape, is_merchant_id};

/// The highest score.
pub const MAX_SCORE: u16 = 1000;
/// Most rules in one rule set: the rules that fired are a bit set in a `u64`, so evaluation never allocates.
pub const MAX_RULES_PER_SET: usize = 64;
/// Most velocity rules in one rule set; the windows of the active and candidate sets are counted in one pass.
pub const MAX_VELOCITY_RULES_PER_SET: usize = 8;
/// Largest velocity `max`: risk keeps up to `max + 1` attempt times per account (8 bytes each), so this bounds
/// memory per account.
pub const MAX_VELOCITY_MAX: u32 = 1000;

/// What to do about an attempt, ordered from most lenient to strictest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// Go ahead only with a closer look.
    Review,
    /// Decline.
    Deny,
}

/// One version of the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSet {
    /// Unique among the loaded rule sets.
    pub version: String,
    /// Scores at or above this are REVIEW.
    pub review_at: u16,
    /// Scores at or above this are DENY.
    pub deny_at: u16,
    /// Evaluated in this order; reasons are reported in it.
    pub rules: Vec<Rule>,
}

impl RuleSet {
    /// The windows of this set's velocity rules (with repeats).
    pub fn velocity_windows(&self) -> impl Iterator<Item = Duration> + '_ {
        self.rules.iter().filter_map(|rule| match rule.condition {
            Condition::Velocity { window, .. } => Some(window),
            _ => None,
        })
    }

    /// How many attempt times per account this set needs remembered: its largest velocity `max` + 1.
    pub fn attempts_needed(&self) -> usize {
        let max = self.rules.iter().filter_map(|rule| match rule.condition {
            Condition::Velocity { max, .. } => Some(max),
            _ => None,
        });
        max.max().map_or(0, |max| max as usize + 1)
    }
}

/// One rule: when it fires, and what it does then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Unique within its rule set.
    pub id: String,
    /// The reason text reported when it fires; made once at load, so firing only copies it into the response.
    pub description: String,
    /// What firing does.
    pub effect: Effect,
    /// When it fires.
    pub condition: Condition,
}

/// What a rule does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Adds this much to the score (1 to [`MAX_SCORE`]).
    Score(u16),
    /// Decides DENY whatever the score.
    Deny,
}

impl Effect {
    /// What it adds to the score; 0 for deny.
    pub fn score(self) -> u16 {
        match self {
            Effect::Score(score) => score,
            Effect::Deny => 0,
        }
    }
}

/// When a rule fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// The amount is strictly above `amount` (in `currency` only, when given).
    AmountAbove {
        /// Minor units.
        amount: i64,
        /// ISO 4217 code, or every currency.
        currency: Option<String>,
    },
    /// More than `max` attempts by the account, this one included, within the sliding `window` ending now.
    Velocity {
        /// Attempts allowed.
        max: u32,
        /// Whole milliseconds, 1 s to 24 h.
        window: Duration,
    },
    /// The merchant is listed.
    MerchantDenyList(BTreeSet<String>),
    /// Risk has no record of the account using the merchant.
    FirstMerchantUse,
    /// The account was opened less than `younger_than` ago (the caller says when).
    NewAccount {
        /// Age limit.
        younger_than: Duration,
    },
    /// The amount is at least `percent` % of the available amount (the caller says how much).
    DrainsAvailable {
        /// 1 to 100.
        percent: u8,
    },
}
