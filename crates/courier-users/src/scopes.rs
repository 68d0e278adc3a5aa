//! The scope each UserService method needs when `[auth]` is on (see `courier_kit::auth`); a method missing here
//! is denied.

/// (full method path, scope).
pub const METHOD_SCOPES: &[(&str, &str)] = &[
    ("/courier.users.v1.UserService/CreateUser", "users:write"),
    ("/courier.users.v1.UserService/GetUser", "users:read"),
    ("/courier.users.v1.UserService/ListUsers", "users:read"),
    ("/courier.users.v1.UserService/UpdateUserStatus", "users:write"),
];
