//! Validation at the boundary: what a caller sends is checked here, completely, before anything is stored.

use courier_kit::status::FieldViolations;
use courier_proto::users::v1 as pb;

use super::Status;

/// Longest accepted name, in characters (not bytes).
pub const MAX_NAME_CHARS: usize = 200;
/// RFC 5321's limit on a forward path.
const MAX_EMAIL_BYTES: usize = 254;
const MAX_LOCAL_PART_BYTES: usize = 64;

/// A validated CreateUser request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    /// Trimmed name.
    pub name: String,
    /// Email as given.
    pub email: String,
    /// Lower-cased email, the uniqueness key.
    pub email_key: String,
}

/// Checks every field of a CreateUser request, reporting all violations at once.
#[allow(clippy::result_large_err)]
pub fn validate_new_user(request: pb::CreateUserRequest) -> Result<NewUser, tonic::Status> {
    let mut violations = FieldViolations::default();
    let name = request.name.trim();
    let name_chars = name.chars().count();
    if name_chars == 0 {
        violations.add("name", "must not be empty");
    } else if name_chars > MAX_NAME_CHARS {
        violations.add("name", format!("must be at most {MAX_NAME_CHARS} characters, got {name_chars}"));
    } else if name.chars().any(char::is_control) {
        violations.add("name", "must not contain control characters");
    }
    if let Err(problem) = check_email(&request.email) {
        violations.add("email", problem);
    }
    violations.into_result()?;
    Ok(NewUser { name: name.to_owned(), email_key: request.email.to_lowercase(), email: request.email })
}

/// A status a user can be moved to: a known value other than UNSPECIFIED.
pub fn parse_status(number: i32) -> Result<Status, String> {
    Status::from_number(i64::from(number)).ok_or_else(|| format!("must be ACTIVE, SUSPENDED or CLOSED, got {number}"))
}

/// A status filter: UNSPECIFIED (0) means any status.
pub fn parse_status_filter(number: i32) -> Result<Option<Status>, String> {
    match number {
        0 => Ok(None),
        n => {
            parse_status(n).map(Some).map_err(|_| format!("must be UNSPECIFIED, ACTIVE, SUSPENDED or CLOSED, got {n}"))
        }
    }
}

/// A deliberately plain check (local@domain, sane lengths and characters), not full RFC 5322: addresses that pass
/// are deliverable in practice, and the ones it refuses are typos far more often than exotic valid forms.
fn check_email(email: &str) -> Result<(), &'static str> {
    if email.is_empty() {
        return Err("must not be empty");
    }
    if email.len() > MAX_EMAIL_BYTES {
        return Err("must be at most 254 bytes");
    }
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace or control characters");
    }
    let (local, domain) = email.rsplit_once('@').ok_or("must be of the form name@domain")?;
    if local.is_empty() || local.len() > MAX_LOCAL_PART_BYTES || local.contains('@') {
        return Err("must have one @ with 1 to 64 characters before it");
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |label: &&str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_alphanumeric() || c == '-')
    };
    if labels.len() < 2 || !labels.iter().all(label_ok) {
        return Err("must have a domain such as example.com after the @");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::StatusExt;

    fn request(name: &str, email: &str) -> pb::CreateUserRequest {
        pb::CreateUserRequest { name: name.into(), email: email.into() }
    }

    fn violated_fields(status: tonic::Status) -> Vec<String> {
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        status.get_details_bad_request().unwrap().field_violations.into_iter().map(|v| v.field).collect()
    }

    #[test]
    fn accepts_and_normalises_a_good_request() {
        let user = validate_new_user(request("  Ada Lovelace ", "Ada@Example.COM")).unwrap();
        assert_eq!(user.name, "Ada Lovelace");
        assert_eq!(user.email, "Ada@Example.COM");
        assert_eq!(user.email_key, "ada@example.com");
    }

    #[test]
    fn name_bounds() {
        assert!(validate_new_user(request(&"é".repeat(200), "a@b.co")).is_ok());
        for bad in ["", "   ", &"x".repeat(201), "tab\u{7}bell"] {
            let status = validate_new_user(request(bad, "a@b.co")).unwrap_err();
            assert_eq!(violated_fields(status), ["name"], "{bad:?}");
        }
    }

    #[test]
    fn malformed_emails() {
        for good in ["a@b.co", "first.last+tag@sub.example.org", "x@münchen.de"] {
            assert!(validate_new_user(request("n", good)).is_ok(), "{good}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        for bad in ["", "plain", "@example.com", "a@", "a@b", "a@@b.co", "a b@c.de", "a@-b.co", "a@b..co", &long] {
            let status = validate_new_user(request("n", bad)).unwrap_err();
            assert_eq!(violated_fields(status), ["email"], "{bad:?}");
        }
    }

    #[test]
    fn reports_every_bad_field_at_once() {
        let status = validate_new_user(request("", "nope")).unwrap_err();
        assert_eq!(violated_fields(status), ["name", "email"]);
    }

    #[test]
    fn status_must_be_known_and_specified() {
        assert_eq!(parse_status(2).unwrap(), Status::Suspended);
        for bad in [0, 4, -1, 99] {
            assert!(parse_status(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_status_filter(0).unwrap(), None);
        assert_eq!(parse_status_filter(3).unwrap(), Some(Status::Closed));
        assert!(parse_status_filter(4).is_err());
    }
}
