//! Layered configuration, read once at start-up: defaults < TOML file < `COURIER_*` environment < flags.
//!
//! A bad value is an error that names the key and where the value came from, reported before anything starts.
//! Nested keys use `__` in the environment: `COURIER_SERVER__MAX_CONCURRENT_CALLS=64` sets
//! `server.max_concurrent_calls`. Only variables naming a known key are read, so unrelated `COURIER_*` variables
//! (the CLI's `COURIER_SERVER_URL`, say) never break a server's start; a variable that names no key and is not
//! one of the CLI's is reported on stderr with the closest key, since a misspelled one (`COURIER_SERVER_REFLECTION`
//! for `COURIER_SERVER__REFLECTION`) would otherwise be ignored without a word. An unknown key in the TOML file is
//! an error (every config struct denies unknown fields).

pub mod codes;
pub mod durations;

use std::collections::BTreeSet;
use std::path::Path;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Value};
use figment::Figment;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The environment prefix every courier variable carries.
pub const ENV_PREFIX: &str = "COURIER_";

/// `COURIER_*` variables that are not server configuration: the CLI's flags and the test harness's.
pub const NON_SERVER_VARIABLES: &[&str] = &[
    "COURIER_SERVER_URL",
    "COURIER_TOKEN",
    "COURIER_CA",
    "COURIER_CERT",
    "COURIER_KEY",
    "COURIER_BIN",
    "COURIER_TEST_POSTGRES_URL",
];

/// A configuration that could not be loaded; its message names each bad key and where its value came from.
#[derive(Debug)]
pub struct ConfigError(Box<figment::Error>);

impl std::error::Error for ConfigError {}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, error) in self.0.clone().into_iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            let key = error.path.join(".").to_ascii_lowercase();
            let source = match &error.metadata {
                Some(meta) if meta.name.contains("environment") => {
                    format!("environment variable {ENV_PREFIX}{}", error.path.join("__").to_ascii_uppercase())
                }
                Some(meta) => match &meta.source {
                    Some(source) => format!("{} {source}", meta.name),
                    None => meta.name.to_string(),
                },
                None => "configuration".to_string(),
            };
            if key.is_empty() {
                write!(f, "invalid configuration in {source}: {}", error.kind)?;
            } else {
                write!(f, "invalid configuration key `{key}` (from {source}): {}", error.kind)?;
            }
        }
        Ok(())
    }
}

/// Loads `T` from its defaults, then `file` (which must exist when given), then the environment, then `flags`
/// (a serializable struct whose `None` fields are skipped, so only flags the user passed override).
pub fn load<T, F>(file: Option<&Path>, flags: &F) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Serialize + Default,
    F: Serialize,
{
    load_over(T::default(), file, flags)
}

/// [`load`] over `defaults` instead of `T::default()`: for a default that depends on the command (reflection is
/// on for `courier up` and off for `courier serve`), which the file, the environment and flags still override.
pub fn load_over<T, F>(defaults: T, file: Option<&Path>, flags: &F) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Serialize,
    F: Serialize,
{
    load_from(defaults, file, Env::prefixed(ENV_PREFIX), flags)
}

fn load_from<T, F>(defaults: T, file: Option<&Path>, env: Env, flags: &F) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Serialize,
    F: Serialize,
{
    let known = known_keys(&defaults)?;
    for warning in unknown_variables(std::env::vars(), &known) {
        // Logging is configured from this very configuration, so it cannot carry the warning yet.
        eprintln!("warning: {warning}");
    }
    let mut figment = Figment::from(Serialized::defaults(defaults));
    if let Some(path) = file {
        figment = figment.merge(Toml::file_exact(path));
    }
    let env = env.split("__").filter(move |key| known.contains(&key.as_str().to_ascii_lowercase()));
    figment.merge(env).merge(Serialized::defaults(flags)).extract().map_err(|e| ConfigError(Box::new(e)))
}

/// One warning for each `COURIER_*` variable in `vars` that names no key in `known` and is not one of
/// [`NON_SERVER_VARIABLES`], naming the closest known key's variable.
pub fn unknown_variables(vars: impl IntoIterator<Item = (String, String)>, known: &BTreeSet<String>) -> Vec<String> {
    let variable = |key: &str| format!("{ENV_PREFIX}{}", key.replace('.', "__").to_ascii_uppercase());
    let mut warnings = Vec::new();
    for (name, _) in vars {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else { continue };
        let key = rest.to_ascii_lowercase().replace("__", ".");
        if known.contains(&key) || NON_SERVER_VARIABLES.contains(&name.as_str()) {
            continue;
        }
        let closest = known
            .iter()
            .map(|key| variable(key))
            .max_by(|a, b| strsim::jaro_winkler(a, &name).total_cmp(&strsim::jaro_winkler(b, &name)));
        let hint = match closest {
            Some(candidate) if strsim::jaro_winkler(&candidate, &name) > 0.8 => format!("; did you mean {candidate}?"),
            _ => String::new(),
        };
        warnings
            .push(format!("{name} is not a configuration key and is ignored (nested keys take two underscores){hint}"));
    }
    warnings
}

/// Every key path (`a`, `a.b`) the defaults serialize to.
fn known_keys<T: Serialize>(defaults: &T) -> Result<BTreeSet<String>, ConfigError> {
    fn walk(prefix: &str, dict: &Dict, out: &mut BTreeSet<String>) {
        for (key, value) in dict {
            let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
            if let Value::Dict(_, inner) = value {
                walk(&path, inner, out);
            }
            out.insert(path);
        }
    }
    let dict = Figment::from(Serialized::defaults(defaults)).extract::<Dict>().map_err(|e| ConfigError(Box::new(e)))?;
    let mut keys = BTreeSet::new();
    walk("", &dict, &mut keys);
    Ok(keys)
}

#[cfg(test)]
mod tests;
