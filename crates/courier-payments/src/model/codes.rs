//! ISO 8583 style response codes, the short strings card networks and issuers answer with.

use courier_proto::payments::v1::DeclineReason;

/// The response code for a decision: "00" when approved (no reason), else the decline's code.
pub fn response_code(reason: DeclineReason) -> &'static str {
    match reason {
        DeclineReason::Unspecified => "00",
        DeclineReason::InsufficientFunds => "51",
        DeclineReason::UnknownAccount => "14",
        DeclineReason::AccountNotActive => "57",
        DeclineReason::HolderNotActive => "62",
        DeclineReason::AmountNotAllowed | DeclineReason::CurrencyMismatch => "13",
        DeclineReason::SuspectedFraud => "59",
        DeclineReason::IssuerUnavailable => "91",
    }
}
