//! The scope each RiskService method needs when `[auth]` is on (see `courier_kit::auth`); a method missing here
//! is denied.

/// (full method path, scope).
pub const METHOD_SCOPES: &[(&str, &str)] = &[
    ("/courier.risk.v1.RiskService/Score", "risk:score"),
    ("/courier.risk.v1.RiskService/ScoreBatch", "risk:score"),
    ("/courier.risk.v1.RiskService/GetRuleSet", "risk:admin"),
    ("/courier.risk.v1.RiskService/SetRollout", "risk:admin"),
    ("/courier.risk.v1.RiskService/ReloadRules", "risk:admin"),
    ("/courier.risk.v1.RiskService/GetRolloutStats", "risk:admin"),
];
