//! The risk service's settings: the `[risk]` table of the configuration file (and `COURIER_RISK__*`).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where the rules come from and how much risk may remember.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RiskConfig {
    /// The rules file (TOML, see `rules.example.toml`); empty means the built-in rules.
    pub rules_file: PathBuf,
    /// How often the rules file's modification time and size are checked; a change reloads it. `0s` turns the
    /// watcher off (ReloadRules still works).
    #[serde(with = "humantime_serde")]
    pub watch_interval: Duration,
    /// Most accounts remembered at once (recent attempts and merchants used). Accounts not seen for longest are
    /// forgotten first. Size it above the number of accounts active within the longest velocity window: a
    /// forgotten account's attempts no longer count.
    pub max_accounts: usize,
    /// Most merchants remembered per account; the least recently used is forgotten first.
    pub max_merchants_per_account: usize,
}

impl Default for RiskConfig {
    fn default() -> Self {
        Self {
            rules_file: PathBuf::new(),
            watch_interval: Duration::from_secs(1),
            max_accounts: 100_000,
            max_merchants_per_account: 64,
        }
    }
}

impl RiskConfig {
    /// Checks the values serde cannot: a message naming the key, like every other configuration error.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_accounts < 2 {
            return Err(format!(
                "invalid configuration key `risk.max_accounts`: must be at least 2, got {}",
                self.max_accounts
            ));
        }
        if self.max_merchants_per_account == 0 {
            return Err("invalid configuration key `risk.max_merchants_per_account`: must be at least 1, got 0".into());
        }
        Ok(())
    }
}
