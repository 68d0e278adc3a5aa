// figment::Jail dictates the closure signature and its large error type.
#![allow(clippy::result_large_err)]

use std::io::Write;

use serde::Deserialize;

use super::*;

#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
struct Sample {
    listen: String,
    inner: Inner,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
struct Inner {
    limit: u32,
    name: String,
}

impl Default for Inner {
    fn default() -> Self {
        Self { limit: 7, name: "default".into() }
    }
}

#[derive(Serialize, Default)]
struct Flags {
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<String>,
}

fn toml_file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file
}

#[test]
fn flags_beat_environment_beat_file_beat_defaults() {
    let file = toml_file("listen = \"file\"\n[inner]\nlimit = 1\nname = \"file\"\n");
    figment::Jail::expect_with(|jail| {
        jail.set_env("COURIER_INNER__LIMIT", "2");
        jail.set_env("COURIER_LISTEN", "env");
        jail.set_env("COURIER_UNRELATED_URL", "ignored, not a key");
        let flags = Flags { listen: Some("flag".into()) };
        let loaded: Sample = load(Some(file.path()), &flags).unwrap();
        assert_eq!(loaded, Sample { listen: "flag".into(), inner: Inner { limit: 2, name: "file".into() } });
        Ok(())
    });
}

#[test]
fn a_bad_value_names_its_key_and_source() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("COURIER_INNER__LIMIT", "lots");
        let err = load::<Sample, _>(None, &Flags::default()).unwrap_err().to_string();
        assert!(err.contains("`inner.limit`"), "{err}");
        assert!(err.contains("environment variable COURIER_INNER__LIMIT"), "{err}");
        Ok(())
    });
}

#[test]
fn an_unknown_key_in_the_file_is_refused() {
    let file = toml_file("[inner]\nlimt = 3\n");
    // Every test that loads runs in a jail: it serialises access to the process environment.
    figment::Jail::expect_with(|_| {
        let err = load::<Sample, _>(Some(file.path()), &Flags::default()).unwrap_err().to_string();
        assert!(err.contains("`inner.limt`") && err.contains("TOML file"), "{err}");
        Ok(())
    });
}

#[test]
fn a_missing_file_is_an_error() {
    figment::Jail::expect_with(|_| {
        let missing = Path::new("/nonexistent/courier.toml");
        let err = load::<Sample, _>(Some(missing), &Flags::default()).unwrap_err();
        assert!(err.to_string().contains("courier.toml"), "{err}");
        Ok(())
    });
}

#[test]
fn a_command_default_is_kept_unless_the_file_or_environment_says_otherwise() {
    let defaults = || Sample { listen: String::new(), inner: Inner { limit: 9, name: "command".into() } };
    let file = toml_file("[inner]\nname = \"file\"\n");
    figment::Jail::expect_with(|jail| {
        // A file that sets another key of the same table keeps the command's default for this one.
        let loaded: Sample = load_over(defaults(), Some(file.path()), &Flags::default()).unwrap();
        assert_eq!(loaded.inner, Inner { limit: 9, name: "file".into() });
        jail.set_env("COURIER_INNER__LIMIT", "3");
        let loaded: Sample = load_over(defaults(), Some(file.path()), &Flags::default()).unwrap();
        assert_eq!(loaded.inner.limit, 3);
        Ok(())
    });
}

#[test]
fn a_misspelled_variable_is_reported_with_the_closest_key() {
    let known = known_keys(&Sample::default()).unwrap();
    let vars = [
        ("COURIER_INNER_LIMIT", "3"),       // one underscore: names nothing
        ("COURIER_INNER__LIMIT", "3"),      // a key
        ("COURIER_SERVER_URL", "http://x"), // the CLI's
        ("PATH", "/bin"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()));
    let warnings = unknown_variables(vars, &known);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("COURIER_INNER_LIMIT") && warnings[0].contains("did you mean COURIER_INNER__LIMIT?"),
        "{warnings:?}"
    );
}
