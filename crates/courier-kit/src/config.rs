//! Layered configuration, read once at start-up: defaults < TOML file < `COURIER_*` environment < flags.
//!
//! A bad value is an error that names the key and where the value came from, reported before anything starts.
//! Nested keys use `__` in the environment: `COURIER_SERVER__MAX_CONCURRENT_CALLS=64` sets
//! `server.max_concurrent_calls`. Only variables naming a known key are read, so unrelated `COURIER_*` variables
//! (the CLI's `COURIER_SERVER_URL`, say) never break a server's start.

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
    let mut figment = Figment::from(Serialized::defaults(defaults));
    if let Some(path) = file {
        figment = figment.merge(Toml::file_exact(path));
    }
    let env = env.split("__").filter(move |key| known.contains(&key.as_str().to_ascii_lowercase()));
    figment.merge(env).merge(Serialized::defaults(flags)).extract().map_err(|e| ConfigError(Box::new(e)))
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
