//! Every UserService RPC over a real socket: the happy paths and each failure's code and details, on SQLite and on
//! PostgreSQL.

use courier_proto::users::v1 as pb;
use courier_tests::{on_every_backend, Backend, TestServer};
use futures::TryStreamExt;
use tonic::Code;
use tonic_types::StatusExt;

const UNKNOWN_ID: &str = "usr_0190f5a0c2b87cc3a1b2c3d4e5f60718";

fn create(name: &str, email: &str) -> pb::CreateUserRequest {
    pb::CreateUserRequest { name: name.into(), email: email.into() }
}

fn violated_fields(status: &tonic::Status) -> Vec<String> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let bad_request = status.get_details_bad_request().expect("BadRequest detail");
    bad_request.field_violations.into_iter().map(|v| v.field).collect()
}

async fn create_get_and_update_a_user(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut users = server.users();

    let created = users.create_user(create(" Ada Lovelace ", "Ada@Example.com")).await.unwrap().into_inner();
    let user = created.user.unwrap();
    assert!(user.id.starts_with("usr_") && user.id.len() == 36, "{}", user.id);
    assert_eq!((user.name.as_str(), user.email.as_str()), ("Ada Lovelace", "Ada@Example.com"));
    assert_eq!(user.status(), pb::UserStatus::Active);
    assert!(user.created_at.is_some() && user.created_at == user.updated_at);

    let fetched = users.get_user(pb::GetUserRequest { id: user.id.clone() }).await.unwrap().into_inner();
    assert_eq!(fetched.user.as_ref(), Some(&user));

    let request = pb::UpdateUserStatusRequest { id: user.id.clone(), status: pb::UserStatus::Suspended as i32 };
    let updated = users.update_user_status(request).await.unwrap().into_inner().user.unwrap();
    assert_eq!(updated.status(), pb::UserStatus::Suspended);
    assert_eq!(updated.created_at, user.created_at);
    assert!(updated.updated_at.unwrap().seconds >= user.updated_at.unwrap().seconds);

    let refetched = users.get_user(pb::GetUserRequest { id: user.id }).await.unwrap().into_inner();
    assert_eq!(refetched.user, Some(updated));
    server.shutdown().await;
}

async fn invalid_create_requests_name_every_bad_field(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut users = server.users();
    let cases = [
        (create("", "a@b.co"), vec!["name"]),
        (create(&"n".repeat(201), "a@b.co"), vec!["name"]),
        (create("Ada", "not-an-email"), vec!["email"]),
        (create("", ""), vec!["name", "email"]),
    ];
    for (request, fields) in cases {
        let status = users.create_user(request).await.unwrap_err();
        assert_eq!(violated_fields(&status), fields);
    }
    // Nothing half-written: no user exists after the failures.
    let listed: Vec<_> =
        users.list_users(pb::ListUsersRequest::default()).await.unwrap().into_inner().try_collect().await.unwrap();
    assert!(listed.is_empty());
    server.shutdown().await;
}

async fn a_duplicate_email_in_any_case_is_already_exists(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut users = server.users();
    users.create_user(create("Ada", "ada@example.com")).await.unwrap();
    let status = users.create_user(create("Impostor", "ADA@EXAMPLE.COM")).await.unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    assert_eq!(status.get_details_resource_info().unwrap().resource_type, "user");
    server.shutdown().await;
}

async fn unknown_and_malformed_ids(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut users = server.users();

    let status = users.get_user(pb::GetUserRequest { id: UNKNOWN_ID.into() }).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let info = status.get_details_resource_info().unwrap();
    assert_eq!((info.resource_type.as_str(), info.resource_name.as_str()), ("user", UNKNOWN_ID));

    let status = users.get_user(pb::GetUserRequest { id: "123".into() }).await.unwrap_err();
    assert_eq!(violated_fields(&status), ["id"]);

    let request = pb::UpdateUserStatusRequest { id: UNKNOWN_ID.into(), status: pb::UserStatus::Closed as i32 };
    assert_eq!(users.update_user_status(request).await.unwrap_err().code(), Code::NotFound);
    server.shutdown().await;
}

async fn unknown_enum_values_are_invalid_argument(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut users = server.users();
    let id = users.create_user(create("Ada", "ada@example.com")).await.unwrap().into_inner().user.unwrap().id;

    for status in [0, 7, -3] {
        let request = pb::UpdateUserStatusRequest { id: id.clone(), status };
        assert_eq!(violated_fields(&users.update_user_status(request).await.unwrap_err()), ["status"]);
    }
    let request = pb::UpdateUserStatusRequest { id: "bad".into(), status: 9 };
    assert_eq!(violated_fields(&users.update_user_status(request).await.unwrap_err()), ["id", "status"]);

    let request = pb::ListUsersRequest { status: 42, ..Default::default() };
    assert_eq!(violated_fields(&users.list_users(request).await.unwrap_err()), ["status"]);
    let request = pb::ListUsersRequest { page_token: "garbage".into(), ..Default::default() };
    assert_eq!(violated_fields(&users.list_users(request).await.unwrap_err()), ["page_token"]);

    let unchanged = users.get_user(pb::GetUserRequest { id }).await.unwrap().into_inner().user.unwrap();
    assert_eq!(unchanged.status(), pb::UserStatus::Active);
    server.shutdown().await;
}

async fn list_filters_pages_and_resumes(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut users = server.users();
    let mut ids = Vec::new();
    for i in 0..25 {
        let user = users.create_user(create(&format!("User {i}"), &format!("u{i}@example.com"))).await.unwrap();
        ids.push(user.into_inner().user.unwrap().id);
    }
    for id in [&ids[3], &ids[17]] {
        let request = pb::UpdateUserStatusRequest { id: id.clone(), status: pb::UserStatus::Suspended as i32 };
        users.update_user_status(request).await.unwrap();
    }

    let list = |request: pb::ListUsersRequest| {
        let mut users = users.clone();
        async move {
            let stream = users.list_users(request).await.unwrap().into_inner();
            stream.try_collect::<Vec<_>>().await.unwrap()
        }
    };
    let all = list(pb::ListUsersRequest::default()).await;
    assert_eq!(all.iter().map(|r| r.user.as_ref().unwrap().id.clone()).collect::<Vec<_>>(), ids);

    let suspended = list(pb::ListUsersRequest { status: pb::UserStatus::Suspended as i32, ..Default::default() }).await;
    let suspended: Vec<_> = suspended.into_iter().map(|r| r.user.unwrap().id).collect();
    assert_eq!(suspended, [ids[3].clone(), ids[17].clone()]);

    let first = list(pb::ListUsersRequest { page_size: 10, ..Default::default() }).await;
    assert_eq!(first.len(), 10);
    let token = first.last().unwrap().resume_token.clone();
    let rest = list(pb::ListUsersRequest { page_token: token, ..Default::default() }).await;
    let resumed: Vec<_> = first.iter().chain(&rest).map(|r| r.user.as_ref().unwrap().id.clone()).collect();
    assert_eq!(resumed, ids, "resuming must neither skip nor repeat");
    server.shutdown().await;
}

on_every_backend!(
    create_get_and_update_a_user,
    invalid_create_requests_name_every_bad_field,
    a_duplicate_email_in_any_case_is_already_exists,
    unknown_and_malformed_ids,
    unknown_enum_values_are_invalid_argument,
    list_filters_pages_and_resumes,
);
