//! Scoring one attempt against one rule set. This runs on every Authorize's path, once or twice (a shadow set), so
//! it allocates nothing: facts are borrowed, fired rules are a bit set, reasons are built later, and only for the
//! response.

use super::{Condition, Decision, Effect, Rule, RuleSet, MAX_SCORE};

/// What is known about one attempt when it is scored.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// Minor units, more than zero.
    pub amount: i64,
    /// ISO 4217 code.
    pub currency: &'a str,
    /// The merchant asking.
    pub merchant_id: &'a str,
    /// Whether risk has no record of this account using this merchant.
    pub first_use_of_merchant: bool,
    /// The account's age in microseconds, if the caller said when it was opened.
    pub account_age_us: Option<i64>,
    /// The account's available amount before this attempt, if the caller said.
    pub available_amount: Option<i64>,
    /// For each velocity window (whole milliseconds): the account's attempts within it, this one included.
    pub attempts: &'a [(u64, u32)],
}

/// One rule set's verdict on one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evaluation {
    /// 0 to [`MAX_SCORE`].
    pub score: u16,
    /// From the thresholds, or DENY when a deny rule fired.
    pub decision: Decision,
    /// Bit `i` is set when rule `i` fired.
    fired: u64,
}

impl Evaluation {
    /// The rules of `set` (the set this evaluated) that fired, in order.
    pub fn fired<'r>(&self, set: &'r RuleSet) -> impl Iterator<Item = &'r Rule> + 'r {
        let fired = self.fired;
        set.rules.iter().enumerate().filter(move |(i, _)| fired & (1 << i) != 0).map(|(_, rule)| rule)
    }
}

/// Scores `facts` against `set`.
pub fn evaluate(set: &RuleSet, facts: &Facts<'_>) -> Evaluation {
    let mut sum: u32 = 0;
    let mut denied = false;
    let mut fired: u64 = 0;
    for (i, rule) in set.rules.iter().enumerate() {
        if holds(&rule.condition, facts) {
            fired |= 1 << i;
            match rule.effect {
                Effect::Score(score) => sum += u32::from(score),
                Effect::Deny => denied = true,
            }
        }
    }
    let score = if denied { MAX_SCORE } else { sum.min(u32::from(MAX_SCORE)) as u16 };
    let decision = if denied || score >= set.deny_at {
        Decision::Deny
    } else if score >= set.review_at {
        Decision::Review
    } else {
        Decision::Allow
    };
    Evaluation { score, decision, fired }
}

fn holds(condition: &Condition, facts: &Facts<'_>) -> bool {
    match condition {
        Condition::AmountAbove { amount, currency } => {
            facts.amount > *amount && currency.as_deref().is_none_or(|currency| currency == facts.currency)
        }
        Condition::Velocity { max, window } => {
            let window_ms = window.as_millis() as u64;
            facts.attempts.iter().find(|(w, _)| *w == window_ms).is_some_and(|(_, attempts)| attempts > max)
        }
        Condition::MerchantDenyList(merchants) => merchants.contains(facts.merchant_id),
        Condition::FirstMerchantUse => facts.first_use_of_merchant,
        Condition::NewAccount { younger_than } => {
            let limit = i64::try_from(younger_than.as_micros()).unwrap_or(i64::MAX);
            facts.account_age_us.is_some_and(|age| age < limit)
        }
        // In i128: amount * 100 cannot overflow, and an empty account is drained by any amount.
        Condition::DrainsAvailable { percent } => facts
            .available_amount
            .is_some_and(|available| i128::from(facts.amount) * 100 >= i128::from(available) * i128::from(*percent)),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use super::*;

    fn rule(id: &str, effect: Effect, condition: Condition) -> Rule {
        Rule { id: id.into(), description: id.into(), effect, condition }
    }

    fn set(rules: Vec<Rule>) -> RuleSet {
        RuleSet { version: "t".into(), review_at: 500, deny_at: 800, rules }
    }

    fn facts() -> Facts<'static> {
        Facts {
            amount: 100,
            currency: "USD",
            merchant_id: "shop",
            first_use_of_merchant: false,
            account_age_us: None,
            available_amount: None,
            attempts: &[],
        }
    }

    #[test]
    fn scores_add_up_and_cap_at_the_maximum() {
        let over = |amount| Condition::AmountAbove { amount, currency: None };
        let rules = set(vec![
            rule("a", Effect::Score(400), over(10)),
            rule("b", Effect::Score(400), over(20)),
            rule("c", Effect::Score(400), over(30)),
            rule("d", Effect::Score(400), over(1_000)),
        ]);
        let evaluation = evaluate(&rules, &facts());
        assert_eq!(evaluation.score, MAX_SCORE);
        assert_eq!(evaluation.decision, Decision::Deny);
        let fired: Vec<&str> = evaluation.fired(&rules).map(|r| r.id.as_str()).collect();
        assert_eq!(fired, ["a", "b", "c"]);
    }

    #[test]
    fn thresholds_are_inclusive() {
        let over = Condition::AmountAbove { amount: 0, currency: None };
        for (score, decision) in [(499, Decision::Allow), (500, Decision::Review), (799, Decision::Review)] {
            let rules = set(vec![rule("a", Effect::Score(score), over.clone())]);
            assert_eq!(evaluate(&rules, &facts()).decision, decision, "{score}");
        }
        let rules = set(vec![rule("a", Effect::Score(800), over)]);
        assert_eq!(evaluate(&rules, &facts()).decision, Decision::Deny);
    }

    #[test]
    fn a_deny_rule_denies_whatever_the_thresholds() {
        let listed = Condition::MerchantDenyList(BTreeSet::from(["shop".to_owned()]));
        let rules = RuleSet { review_at: 1000, deny_at: 1000, ..set(vec![rule("deny", Effect::Deny, listed)]) };
        let evaluation = evaluate(&rules, &facts());
        assert_eq!((evaluation.score, evaluation.decision), (MAX_SCORE, Decision::Deny));
    }

    #[test]
    fn conditions() {
        let usd_only = Condition::AmountAbove { amount: 50, currency: Some("USD".into()) };
        assert!(holds(&usd_only, &facts()));
        assert!(!holds(&usd_only, &Facts { currency: "EUR", ..facts() }));
        assert!(!holds(&usd_only, &Facts { amount: 50, ..facts() }));

        let velocity = Condition::Velocity { max: 2, window: Duration::from_secs(60) };
        assert!(!holds(&velocity, &facts()), "no count for the window: does not fire");
        assert!(!holds(&velocity, &Facts { attempts: &[(60_000, 2)], ..facts() }));
        assert!(holds(&velocity, &Facts { attempts: &[(1_000, 0), (60_000, 3)], ..facts() }));

        let young = Condition::NewAccount { younger_than: Duration::from_secs(10) };
        assert!(!holds(&young, &facts()), "unknown age: does not fire");
        assert!(holds(&young, &Facts { account_age_us: Some(9_999_999), ..facts() }));
        assert!(!holds(&young, &Facts { account_age_us: Some(10_000_000), ..facts() }));

        let drains = Condition::DrainsAvailable { percent: 90 };
        assert!(!holds(&drains, &facts()), "unknown balance: does not fire");
        assert!(holds(&drains, &Facts { available_amount: Some(111), ..facts() }));
        assert!(!holds(&drains, &Facts { available_amount: Some(112), ..facts() }));
        assert!(holds(&drains, &Facts { available_amount: Some(0), ..facts() }));
        assert!(
            holds(&drains, &Facts { amount: i64::MAX, available_amount: Some(i64::MAX), ..facts() }),
            "no overflow"
        );

        assert!(holds(&Condition::FirstMerchantUse, &Facts { first_use_of_merchant: true, ..facts() }));
        assert!(!holds(&Condition::FirstMerchantUse, &facts()));
    }
}
