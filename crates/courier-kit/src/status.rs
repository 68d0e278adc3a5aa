//! Failures mapped to the wire in one place.
//!
//! Services describe what went wrong with these constructors; clients get a stable status code plus a
//! machine-readable `google.rpc` detail, never an internal error message.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

/// A status as the `google.rpc.Status` message, details included (tonic carries them already encoded as one): how
/// a call that answers many items (AuthorizeStream, ScoreBatch) reports one item's failure inside its answer.
pub fn to_rpc_status(error: &Status) -> tonic_types::pb::Status {
    use prost::Message;
    match tonic_types::pb::Status::decode(error.details()) {
        Ok(mut rich) if !error.details().is_empty() => {
            rich.code = error.code() as i32;
            rich.message = error.message().to_owned();
            rich
        }
        _ => {
            tonic_types::pb::Status { code: error.code() as i32, message: error.message().to_owned(), details: vec![] }
        }
    }
}

/// Field-level validation failures, collected so a client learns every bad field in one round trip.
///
/// ```
/// use courier_kit::status::FieldViolations;
/// let mut violations = FieldViolations::default();
/// violations.add("name", "must not be empty");
/// let status = violations.into_result().unwrap_err();
/// assert_eq!(status.code(), tonic::Code::InvalidArgument);
/// ```
#[derive(Debug, Default)]
pub struct FieldViolations(Vec<FieldViolation>);

impl FieldViolations {
    /// Records that `field` (a protobuf field path such as `name` or `user.email`) is invalid.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation::new(field, description));
    }

    /// Passes `Ok` values through; records an `Err` against `field` (its message is shown to the client).
    pub fn check<T, E: std::fmt::Display>(&mut self, field: &str, result: Result<T, E>) -> Option<T> {
        result.map_err(|e| self.add(field, e.to_string())).ok()
    }

    /// INVALID_ARGUMENT with every recorded violation; for the branch where a [`check`](Self::check) failed.
    pub fn into_status(self) -> Status {
        invalid_argument(self.0)
    }

    /// `true` when no violation was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(())` when nothing was recorded, otherwise [`invalid_argument`] with every violation.
    #[allow(clippy::result_large_err)]
    pub fn into_result(self) -> Result<(), Status> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(invalid_argument(self.0))
        }
    }
}

/// INVALID_ARGUMENT carrying a `google.rpc.BadRequest` with the given field violations.
pub fn invalid_argument(violations: Vec<FieldViolation>) -> Status {
    let message = match violations.as_slice() {
        [only] => format!("invalid {}: {}", only.field, only.description),
        many => {
            let fields: Vec<&str> = many.iter().map(|v| v.field.as_str()).collect();
            format!("invalid fields: {}", fields.join(", "))
        }
    };
    Status::with_error_details(Code::InvalidArgument, message, ErrorDetails::with_bad_request(violations))
}

/// NOT_FOUND carrying a `google.rpc.ResourceInfo` naming what was looked for.
pub fn not_found(resource_type: &str, resource_name: &str) -> Status {
    Status::with_error_details(
        Code::NotFound,
        format!("{resource_type} {resource_name} not found"),
        ErrorDetails::with_resource_info(resource_type, resource_name, "", "not found"),
    )
}

/// ALREADY_EXISTS carrying a `google.rpc.ResourceInfo` for the resource that conflicts.
pub fn already_exists(resource_type: &str, resource_name: &str, description: &str) -> Status {
    Status::with_error_details(
        Code::AlreadyExists,
        format!("{resource_type} already exists: {description}"),
        ErrorDetails::with_resource_info(resource_type, resource_name, "", description),
    )
}

/// A status with a `google.rpc.ErrorInfo` whose `reason` is a stable, UPPER_SNAKE_CASE code clients switch on.
pub fn with_reason(code: Code, reason: &str, domain: &str, message: impl Into<String>) -> Status {
    Status::with_error_details(
        code,
        message,
        ErrorDetails::with_error_info(reason, domain, std::collections::HashMap::new()),
    )
}

/// INTERNAL for a failure the client cannot act on. The cause is logged here, with its full chain, and never sent:
/// internal messages can carry SQL, paths or addresses.
pub fn internal(context: &str, error: &(dyn std::error::Error + 'static)) -> Status {
    tracing::error!(error = %ErrorChain(error), "{context}");
    Status::internal("internal error")
}

/// The spec's spelling of a code (`NOT_FOUND`), as grpcurl, logs and every other gRPC stack print it.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The code a spec name (`UNAVAILABLE`, any case) stands for, as configuration files spell codes.
pub fn code_from_name(name: &str) -> Option<Code> {
    const ALL: [Code; 17] = [
        Code::Ok,
        Code::Cancelled,
        Code::Unknown,
        Code::InvalidArgument,
        Code::DeadlineExceeded,
        Code::NotFound,
        Code::AlreadyExists,
        Code::PermissionDenied,
        Code::ResourceExhausted,
        Code::FailedPrecondition,
        Code::Aborted,
        Code::OutOfRange,
        Code::Unimplemented,
        Code::Internal,
        Code::Unavailable,
        Code::DataLoss,
        Code::Unauthenticated,
    ];
    ALL.into_iter().find(|&code| code_name(code).eq_ignore_ascii_case(name))
}

/// Displays an error with its `source()` chain, `a: b: c`.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_violations_collects_every_field() {
        let mut v = FieldViolations::default();
        v.add("name", "must not be empty");
        v.add("email", "must contain @");
        let status = v.into_result().unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        let fields: Vec<String> =
            status.get_details_bad_request().unwrap().field_violations.into_iter().map(|f| f.field).collect();
        assert_eq!(fields, ["name", "email"]);
        assert_eq!(status.message(), "invalid fields: name, email");
    }

    #[test]
    fn internal_hides_the_cause() {
        let cause = std::io::Error::other("disk /var/secret full");
        let status = internal("writing", &cause);
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), "internal error");
        assert!(status.details().is_empty());
    }

    #[test]
    fn code_names_use_the_spec_spelling() {
        assert_eq!(code_name(Code::NotFound), "NOT_FOUND");
        assert_eq!(code_name(Code::InvalidArgument), "INVALID_ARGUMENT");
        assert_eq!(code_name(Code::Ok), "OK");
    }

    #[test]
    fn code_names_parse_back() {
        for n in 0..17 {
            let code = Code::from_i32(n);
            assert_eq!(code_from_name(code_name(code)), Some(code));
        }
        assert_eq!(code_from_name("unavailable"), Some(Code::Unavailable));
        assert_eq!(code_from_name("UNAVAILABLE "), None);
    }

    #[test]
    fn not_found_names_the_resource() {
        let status = not_found("user", "usr_1");
        let info = status.get_details_resource_info().unwrap();
        assert_eq!((info.resource_type.as_str(), info.resource_name.as_str()), ("user", "usr_1"));
    }
}
