//! Prometheus text exposition as tests read it: an admin port's `/metrics`, parsed strictly into samples.

use std::collections::BTreeMap;

use crate::http::get;

/// One sample of the text exposition.
#[derive(Debug)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses the Prometheus text format, asserting every line is a comment or `name{labels} value`.
pub fn parse(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text.lines().filter(|line| !line.is_empty()) {
        if line.starts_with('#') {
            assert!(line.starts_with("# HELP ") || line.starts_with("# TYPE "), "unexpected comment: {line}");
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("not a number: {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels: {line}"))),
            None => (series, ""),
        };
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name: {line}"
        );
        // Label values here never contain `",` (paths, codes, reasons), so splitting on it is exact.
        let labels = labels
            .split("\",")
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once("=\"").unwrap_or_else(|| panic!("bad label: {line}"));
                (key.to_owned(), value.trim_end_matches('"').to_owned())
            })
            .collect();
        samples.push(Sample { name: name.to_owned(), labels, value });
    }
    samples
}

/// The sum of the samples named `name` whose labels include `labels`.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
        .map(|s| s.value)
        .sum()
}

/// `/metrics` of the admin port `admin` (`host:port`), parsed.
pub async fn scrape(admin: &str) -> Vec<Sample> {
    let (status, body) = get(admin, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    parse(&body)
}
