//! The scope each PaymentService method needs when `[auth]` is on (see `courier_kit::auth`); a method missing
//! here is denied. Which merchant's data a caller sees is decided in the handlers, from the principal.

/// (full method path, scope).
pub const METHOD_SCOPES: &[(&str, &str)] = &[
    ("/courier.payments.v1.PaymentService/OpenAccount", "accounts:write"),
    ("/courier.payments.v1.PaymentService/GetAccount", "accounts:read"),
    ("/courier.payments.v1.PaymentService/CreditAccount", "accounts:write"),
    ("/courier.payments.v1.PaymentService/UpdateAccountStatus", "accounts:write"),
    ("/courier.payments.v1.PaymentService/Authorize", "payments:authorize"),
    ("/courier.payments.v1.PaymentService/AuthorizeStream", "payments:authorize"),
    ("/courier.payments.v1.PaymentService/Capture", "payments:capture"),
    ("/courier.payments.v1.PaymentService/BatchCapture", "payments:capture"),
    ("/courier.payments.v1.PaymentService/Void", "payments:capture"),
    ("/courier.payments.v1.PaymentService/GetAuthorization", "payments:read"),
    ("/courier.payments.v1.PaymentService/ListAuthorizations", "payments:read"),
    // The feed spans every merchant's authorizations: an operator's scope, not a merchant's.
    ("/courier.payments.v1.PaymentService/WatchEvents", "events:read"),
];

/// Money-moving methods: every call is written to the audit log.
pub const AUDITED: &[&str] = &[
    "/courier.payments.v1.PaymentService/CreditAccount",
    "/courier.payments.v1.PaymentService/Authorize",
    "/courier.payments.v1.PaymentService/AuthorizeStream",
    "/courier.payments.v1.PaymentService/Capture",
    "/courier.payments.v1.PaymentService/BatchCapture",
    "/courier.payments.v1.PaymentService/Void",
];
