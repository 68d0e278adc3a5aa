use super::*;

const MINIMAL: &str = r#"
[rollout]
active = "v1"

[[rule_set]]
version = "v1"

[[rule_set.first_merchant_use]]
id = "merchant.first_use"
score = 100
"#;

fn refused(text: &str) -> String {
    let error = parse(text, "test.toml").expect_err("should not load");
    assert_eq!(error.origin, "test.toml");
    error.problem
}

#[test]
fn the_builtin_rules_and_the_example_load() {
    let builtin = builtin().unwrap();
    assert_eq!(builtin.rollout, RolloutSpec::active("builtin-1"));
    assert_eq!(builtin.sets.len(), 1);

    let example = parse(include_str!("../../../rules.example.toml"), "rules.example.toml").unwrap();
    assert_eq!(example.sets.len(), 2);
    assert_eq!(example.rollout.candidate, Some(("2026-11-20".into(), CandidateMode::Shadow)));
    // Every kind of rule is in the example, in evaluation order.
    let kinds: Vec<&str> = example.sets[0]
        .rules
        .iter()
        .map(|rule| match rule.condition {
            Condition::AmountAbove { .. } => "amount_above",
            Condition::Velocity { .. } => "velocity",
            Condition::MerchantDenyList(_) => "merchant_deny_list",
            Condition::FirstMerchantUse => "first_merchant_use",
            Condition::NewAccount { .. } => "new_account",
            Condition::DrainsAvailable { .. } => "drains_available",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "amount_above",
            "amount_above",
            "velocity",
            "velocity",
            "merchant_deny_list",
            "first_merchant_use",
            "new_account",
            "drains_available"
        ]
    );
}

#[test]
fn a_minimal_file_gets_the_default_thresholds_and_descriptions() {
    let loaded = parse(MINIMAL, "test.toml").unwrap();
    let set = &loaded.sets[0];
    assert_eq!((set.review_at, set.deny_at), (500, 800));
    assert_eq!(set.rules[0].description, "first attempt by this account at this merchant");
    assert_eq!(set.rules[0].effect, Effect::Score(100));
}

#[test]
fn syntax_and_type_errors_name_the_line() {
    let broken = MINIMAL.replace("score = 100", "score = \"lots\"");
    let problem = refused(&broken);
    assert!(problem.contains("line 10, column 9"), "{problem}");
    assert!(problem.contains("invalid type: string \"lots\""), "{problem}");

    let unclosed = MINIMAL.replace("[[rule_set]]", "[[rule_set]");
    assert!(refused(&unclosed).contains("line 5"), "{}", refused(&unclosed));
}

#[test]
fn unknown_keys_are_errors() {
    let typo = MINIMAL.replace("version = \"v1\"", "version = \"v1\"\ndeny_above = 700");
    let problem = refused(&typo);
    assert!(problem.contains("unknown field `deny_above`"), "{problem}");
    assert!(problem.contains("line 7"), "{problem}");
    let unknown_kind = format!("{MINIMAL}\n[[rule_set.geo_block]]\nid = \"x\"\n");
    assert!(refused(&unknown_kind).contains("unknown field `geo_block`"));
}

#[test]
fn every_invalid_value_is_reported_at_once_with_its_place() {
    let text = r#"
[rollout]
active = "v1"

[[rule_set]]
version = "v1"
review_at = 1001
deny_at = 850

[[rule_set.velocity]]
id = "burst"
max = 0
window = "500ms"
score = 10

[[rule_set.amount_above]]
id = "big"
amount = -5
currency = "usd"
deny = true
score = 5

[[rule_set.merchant_deny_list]]
id = "big"
merchants = ["ok", "not ok"]

[[rule_set.drains_available]]
id = "drain"
percent = 150
score = 2000
"#;
    let problem = refused(text);
    let mut lines = problem.lines();
    assert_eq!(lines.next(), Some("12 problems:"));
    let lines: Vec<&str> = lines.map(|line| line.strip_prefix("  ").expect("indented")).collect();
    let expected = [
        r#"rule_set "v1": `review_at` must be 1 to 1000, got 1001"#,
        r#"rule_set "v1": `review_at` (1001) must not be above `deny_at` (850)"#,
        r#"rule_set "v1", amount_above rule "big": has both `score` and `deny = true`; a deny rule adds no score"#,
        r#"rule_set "v1", amount_above rule "big": `amount` must be zero or more (minor units), got -5"#,
        r#"rule_set "v1", amount_above rule "big": `currency` must be an ISO 4217 code such as "USD", got "usd""#,
        r#"rule_set "v1", velocity rule "burst": `max` must be 1 to 1000, got 0"#,
        r#"rule_set "v1", velocity rule "burst": `window` must be whole milliseconds from 1s to 24h, got 500ms"#,
        r#"rule_set "v1", merchant_deny_list rule "big": `id` is used by another rule of this rule set"#,
        r#"rule_set "v1", merchant_deny_list rule "big": needs `score = N` (1 to 1000) or `deny = true`"#,
        r#"rule_set "v1", merchant_deny_list rule "big": `merchants[1]` must be 1 to 64 of A-Z a-z 0-9 _ - (a merchant id), got "not ok""#,
        r#"rule_set "v1", drains_available rule "drain": `score` must be 1 to 1000, got 2000"#,
        r#"rule_set "v1", drains_available rule "drain": `percent` must be 1 to 100, got 150"#,
    ];
    assert_eq!(lines, expected);
}

#[test]
fn rule_set_versions_must_be_unique_and_well_formed() {
    let twice = format!("{MINIMAL}{}", &MINIMAL[MINIMAL.find("[[rule_set]]").unwrap()..]);
    assert!(refused(&twice).contains(r#"rule_set "v1": `version` is used by an earlier rule set"#));
    let spaced = MINIMAL.replace("\"v1\"", "\"v 1\"");
    assert!(refused(&spaced).contains("`version` must be 1 to 64 of A-Z a-z 0-9 . _ -"));
    let none = "[rollout]\nactive = \"v1\"\n";
    assert!(refused(none).contains("\n  no [[rule_set]]: at least one rule set is needed\n"));
}

#[test]
fn the_rollout_must_name_loaded_versions_and_a_coherent_mode() {
    let two = format!("{MINIMAL}{}", MINIMAL[MINIMAL.find("[[rule_set]]").unwrap()..].replace("v1", "v2"));
    let with = |rollout: &str| two.replace("active = \"v1\"", rollout);
    assert_eq!(
        parse(&with("active = \"v1\"\ncandidate = \"v2\"\nmode = \"percentage\"\npercent = 25"), "t").unwrap().rollout,
        RolloutSpec { active: "v1".into(), candidate: Some(("v2".into(), CandidateMode::Percentage(25))) }
    );
    for (rollout, expected) in [
        ("active = \"v3\"", r#"`active` = "v3" is not the version of a [[rule_set]] (versions: ["v1", "v2"])"#),
        ("active = \"v1\"\ncandidate = \"v1\"\nmode = \"shadow\"", "`candidate` must differ from `active`"),
        ("active = \"v1\"\ncandidate = \"v2\"", "a `candidate` needs `mode` = \"shadow\" or \"percentage\""),
        ("active = \"v1\"\ncandidate = \"v2\"\nmode = \"percentage\"", "`mode = \"percentage\"` needs `percent`"),
        ("active = \"v1\"\ncandidate = \"v2\"\nmode = \"percentage\"\npercent = 101", "`percent` must be 0 to 100"),
        ("active = \"v1\"\ncandidate = \"v2\"\nmode = \"shadow\"\npercent = 5", "`percent` goes only with"),
        ("active = \"v1\"\ncandidate = \"v2\"\nmode = \"enforce\"", "to enforce \"v2\", set `active = \"v2\"`"),
        ("active = \"v1\"\nmode = \"shadow\"", "`mode` and `percent` need a `candidate`"),
    ] {
        let problem = refused(&with(rollout));
        assert!(problem.starts_with("[rollout]: "), "{problem}");
        assert!(problem.contains(expected), "{rollout:?}: {problem}");
    }
    let misspelt = refused(&with("active = \"v1\"\ncandidate = \"v2\"\nmode = \"shadw\""));
    assert!(
        misspelt.contains("unknown variant `shadw`, expected one of `shadow`, `percentage`, `enforce`"),
        "{misspelt}"
    );
}

#[test]
fn too_many_rules_are_refused() {
    let mut text = MINIMAL.to_owned();
    for i in 0..MAX_RULES_PER_SET {
        text.push_str(&format!("[[rule_set.amount_above]]\nid = \"a{i}\"\namount = {i}\nscore = 1\n"));
    }
    assert!(refused(&text).contains("at most 64 rules per rule set, got 65"));
    let mut text = MINIMAL.to_owned();
    for i in 0..=MAX_VELOCITY_RULES_PER_SET {
        text.push_str(&format!("[[rule_set.velocity]]\nid = \"v{i}\"\nmax = 5\nwindow = \"{}s\"\nscore = 1\n", i + 1));
    }
    assert!(refused(&text).contains("at most 8 velocity rules per rule set, got 9"));
}

#[test]
fn a_missing_file_names_its_path() {
    let error = load_file(Path::new("/nonexistent/rules.toml")).unwrap_err();
    assert_eq!(error.origin, "rules file /nonexistent/rules.toml");
    assert!(error.problem.starts_with("cannot read it: "), "{}", error.problem);
}
