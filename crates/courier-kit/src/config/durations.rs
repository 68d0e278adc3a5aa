//! Maps of names to durations (`"/pkg.Service/Method" = "250ms"`), humantime-formatted like every other duration
//! in the configuration, for `#[serde(with = ...)]`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// Writes each duration in humantime form.
pub fn serialize<S: Serializer>(map: &BTreeMap<String, Duration>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_map(map.iter().map(|(key, value)| (key, humantime_serde::Serde::from(*value))))
}

/// Reads humantime durations (`"250ms"`, `"1s"`).
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<BTreeMap<String, Duration>, D::Error> {
    let map = BTreeMap::<String, humantime_serde::Serde<Duration>>::deserialize(deserializer)?;
    Ok(map.into_iter().map(|(key, value)| (key, value.into_inner())).collect())
}
