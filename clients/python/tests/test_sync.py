"""Client (sync) against a real `courier up`."""

from __future__ import annotations

import itertools
import subprocess
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from courier.payments.v1 import payments_pb2
from courier.users.v1 import users_pb2

from courier_client import Client, CourierError, authorize_request, errors
from courier_client.interceptors import LoggingInterceptor, MetricsInterceptor

from .conftest import Server

MERCHANT = "m_python_sdk"

def email() -> str:
    return f"sdk-{uuid.uuid4().hex[:12]}@example.com"

def funded_account(client: Client, amount: int = 10_000) -> payments_pb2.Account:
    user = client.create_user("Ada Lovelace", email())
    account = client.open_account(user.id, "USD")
    client.credit_account(account.id, amount, "USD")
    return client.get_account(account.id)

def test_token_is_read_from_courier_data_in_the_working_directory(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Client() as the README uses it: no token given, ./courier-data/token found like the CLI finds it.
    monkeypatch.delenv("COURIER_TOKEN", raising=False)
    monkeypatch.delenv("COURIER_DATA_DIR", raising=False)
    monkeypatch.chdir(server.data_dir.parent)
    assert server.data_dir.name == "courier-data"
    with Client(server.address) as client:
        assert client.metadata == (("authorization", f"Bearer {server.token}"),)
        assert client.create_user("Ada", email()).id.startswith("usr_")

def test_token_from_the_environment_and_none(
    server: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no courier-data here
    monkeypatch.setenv("COURIER_TOKEN", server.token)
    with Client(server.address) as client:
        assert client.create_user("Env", email()).id
    monkeypatch.delenv("COURIER_TOKEN")
    with Client(server.address) as client, pytest.raises(errors.Unauthenticated) as caught:
        client.create_user("Nobody", email())
    assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED
    with Client(server.address, token="not-a-jwt") as client, pytest.raises(errors.Unauthenticated):
        client.create_user("Forged", email())

def test_the_seed_flow(client: Client) -> None:
    user = client.create_user("Grace Hopper", email())
    assert client.get_user(user.id) == user
    account = client.open_account(user.id, "USD", credit_limit=500)
    credited = client.credit_account(account.id, 10_000, "USD")
    assert credited.account.posted_balance == 10_000 and credited.event_sequence > 0
    auth = client.authorize(account.id, 2_500, "USD", merchant_id=MERCHANT, metadata={"order": "42"})
    assert auth.decision == payments_pb2.DECISION_APPROVED and auth.response_code == "00"
    assert auth.status == payments_pb2.AUTHORIZATION_STATUS_HELD and auth.metadata["order"] == "42"
    assert client.get_account(account.id).available_amount == 10_000 + 500 - 2_500
    captured = client.capture(auth.id, 1_000)
    assert captured.status == payments_pb2.AUTHORIZATION_STATUS_CAPTURED and captured.captured_amount == 1_000
    assert client.get_authorization(auth.id) == captured
    assert client.get_account(account.id).posted_balance == 9_000
    held = client.authorize(account.id, 100, "USD", merchant_id=MERCHANT)
    assert client.void(held.id).status == payments_pb2.AUTHORIZATION_STATUS_VOIDED

def test_a_decline_is_an_answer(client: Client) -> None:
    account = funded_account(client, 1_000)
    auth = client.authorize(account.id, 5_000, "USD", merchant_id=MERCHANT)
    assert auth.decision == payments_pb2.DECISION_DECLINED
    assert auth.decline_reason == payments_pb2.DECLINE_REASON_INSUFFICIENT_FUNDS and auth.response_code != "00"

def test_idempotency_keys(client: Client) -> None:
    account = funded_account(client)
    first = client.authorize(account.id, 100, "USD", merchant_id=MERCHANT)
    again = client.authorize(account.id, 100, "USD", merchant_id=MERCHANT)
    assert again.id != first.id  # a key generated for each call: two holds
    key = "sdk-" + uuid.uuid4().hex
    replay = [client.authorize(account.id, 100, "USD", merchant_id=MERCHANT, idempotency_key=key) for _ in range(2)]
    assert replay[0].id == replay[1].id  # the same key replays the stored answer
    with pytest.raises(errors.AlreadyExists) as caught:
        client.authorize(account.id, 999, "USD", merchant_id=MERCHANT, idempotency_key=key)
    assert caught.value.reason == "IDEMPOTENCY_KEY_REUSED" and caught.value.domain == "payments.courier.dev"
    assert caught.value.idempotency_key == key and not caught.value.outcome_unknown

def test_errors_carry_the_decoded_details(client: Client) -> None:
    with pytest.raises(errors.InvalidArgument) as bad:
        client.create_user("", "not-an-email")
    assert {v.field for v in bad.value.field_violations} == {"name", "email"}
    assert all(v.description for v in bad.value.field_violations)
    assert "name: must not be empty" in str(bad.value)
    assert isinstance(bad.value.__cause__, grpc.RpcError)
    with pytest.raises(errors.NotFound):
        client.get_user("usr_0190f5a0c2b87cc3a1b2c3d4e5f60718")
    account = funded_account(client)
    auth = client.authorize(account.id, 100, "USD", merchant_id=MERCHANT)
    client.capture(auth.id)
    with pytest.raises(errors.FailedPrecondition) as refused:
        client.void(auth.id)
    assert refused.value.reason == "ALREADY_CAPTURED" and refused.value.error_info is not None
    with pytest.raises(CourierError) as caught:  # every failure is a CourierError
        client.authorize(account.id, 0, "USD", merchant_id=MERCHANT)
    assert [v.field for v in caught.value.field_violations] == ["amount"]

def test_a_deadline_exceeded_says_which_key_to_retry_with(client: Client) -> None:
    account = funded_account(client)
    with pytest.raises(errors.DeadlineExceeded) as caught:
        client.authorize(account.id, 100, "USD", merchant_id=MERCHANT, timeout=1e-6)
    assert caught.value.outcome_unknown and caught.value.idempotency_key
    assert caught.value.idempotency_key in str(caught.value)
    # Retrying with that key applies the authorization at most once.
    key = caught.value.idempotency_key
    retried = client.authorize(account.id, 100, "USD", merchant_id=MERCHANT, idempotency_key=key)
    assert client.authorize(account.id, 100, "USD", merchant_id=MERCHANT, idempotency_key=key).id == retried.id

def test_list_users_streams_and_resumes(client: Client) -> None:
    made = {client.create_user(f"Lister {i}", email()).id for i in range(5)}
    everyone = list(client.list_users())
    assert made <= {u.id for u in everyone}
    assert [u.id for u in everyone] == sorted(u.id for u in everyone)
    pages = client.list_users_pages(page_size=2)
    first_two = list(itertools.islice(pages, 2))
    pages.close()  # stop early: the call is cancelled
    rest = list(client.list_users(page_token=first_two[-1].resume_token))
    assert [r.user.id for r in first_two] + [u.id for u in rest] == [u.id for u in everyone]
    suspended = client.update_user_status(everyone[0].id, users_pb2.USER_STATUS_SUSPENDED)
    assert suspended.id in {u.id for u in client.list_users(users_pb2.USER_STATUS_SUSPENDED)}

def test_list_authorizations(client: Client) -> None:
    account = funded_account(client)
    ids = [client.authorize(account.id, 10 + i, "USD", merchant_id=MERCHANT).id for i in range(3)]
    client.capture(ids[0])
    assert sorted(a.id for a in client.list_authorizations(account.id)) == sorted(ids)
    held = client.list_authorizations(account.id, status=payments_pb2.AUTHORIZATION_STATUS_HELD)
    assert sorted(a.id for a in held) == sorted(ids[1:])

def test_watch_events_from_a_sequence(client: Client) -> None:
    account = funded_account(client)
    auth = client.authorize(account.id, 100, "USD", merchant_id=MERCHANT)
    with client.watch_events(account_id=account.id, timeout=10) as events:
        seen = list(itertools.islice(events, 3))
    assert [e.type for e in seen] == [
        payments_pb2.EVENT_TYPE_ACCOUNT_OPENED, payments_pb2.EVENT_TYPE_CREDITED, payments_pb2.EVENT_TYPE_AUTHORIZED,
    ]
    assert seen[2].authorization_id == auth.id and events.last_sequence == seen[2].sequence
    # Resuming after the last one seen: the next event, live, and nothing twice.
    with client.watch_events(events.last_sequence + 1, account_id=account.id, timeout=10) as later:
        stream: Iterator[payments_pb2.Event] = iter(later)
        client.capture(auth.id)
        captured = next(stream)
    assert captured.type == payments_pb2.EVENT_TYPE_CAPTURED and captured.sequence > seen[2].sequence

def test_watch_events_resumes_across_a_server_restart(tmp_path: Path) -> None:
    # The stream breaks (the server stops); the iterator reconnects to the server started again on the same
    # address and data dir, and goes on from the event after the last one it yielded: gap-free, nothing twice.
    data_dir = tmp_path / "courier-data"
    first = Server(data_dir)
    address = first.address
    second: Server | None = None
    try:
        with Client(address, data_dir=data_dir) as client:
            client.wait_ready()
            account = funded_account(client)
            with client.watch_events(account_id=account.id, timeout=60) as events:
                stream = iter(events)
                assert [next(stream).type for _ in range(2)] == [
                    payments_pb2.EVENT_TYPE_ACCOUNT_OPENED, payments_pb2.EVENT_TYPE_CREDITED,
                ]
                first.stop()
                second = Server(data_dir, listen=address)
                assert second.address == address
                client.wait_ready()
                # The token from the first start stays valid: the development secret is kept in the data dir.
                client.credit_account(account.id, 1, "USD")
                resumed = next(stream)
            assert resumed.type == payments_pb2.EVENT_TYPE_CREDITED and resumed.amount == 1
            assert resumed.sequence == events.last_sequence
    finally:
        first.stop()
        if second is not None:
            second.stop()

def test_authorize_stream_answers_each_message(client: Client) -> None:
    account = funded_account(client, 1_000)
    with client.authorize_stream() as stream:
        ok = stream.send(account.id, 100, "USD", merchant_id=MERCHANT)
        bad = stream.send(account.id, 0, "USD", merchant_id=MERCHANT)  # answered with its own error
        declined = stream.send(account.id, 50_000, "USD", merchant_id=MERCHANT, correlation_id="too-much")
        stream.done()
        answers = {answer.correlation_id: answer for answer in stream}
    assert set(answers) == {ok, bad, "too-much"}
    approved, refused = answers[ok].authorization, answers["too-much"].authorization
    assert answers[ok].ok and approved is not None and approved.decision == payments_pb2.DECISION_APPROVED
    error = answers[bad].error
    assert isinstance(error, errors.InvalidArgument) and [v.field for v in error.field_violations]
    assert declined == "too-much" and refused is not None and refused.decision == payments_pb2.DECISION_DECLINED

def test_authorize_many_and_batch_capture_from_iterables(client: Client) -> None:
    account = funded_account(client)
    requests = (authorize_request(account.id, 10, "USD", merchant_id=MERCHANT) for _ in range(20))
    answers = list(client.authorize_many(requests))
    assert sorted(int(a.correlation_id) for a in answers) == list(range(20))
    held = [a.authorization.id for a in answers if a.authorization is not None]
    assert len(held) == 20

    def captures() -> Iterator[payments_pb2.CaptureRequest | str]:
        yield from held[:-1]
        yield payments_pb2.CaptureRequest(authorization_id=held[-1], amount=5)
        yield "auth_0190f5a0c2b87cc3a1b2c3d4e5f60718"  # unknown: fails alone, by index

    result = client.batch_capture(captures())
    assert (result.captured, result.failed, result.captured_amount) == (20, 1, 19 * 10 + 5)
    assert [(f.index, type(f.error)) for f in result.failures] == [(20, errors.NotFound)]

def test_interceptors_log_and_count(client: Client, server: Server, caplog: pytest.LogCaptureFixture) -> None:
    metrics = MetricsInterceptor()
    with Client(server.address, data_dir=server.data_dir, interceptors=[LoggingInterceptor(), metrics]) as c:
        with caplog.at_level(logging.INFO, logger="courier_client"):
            user = c.create_user("Logged", email())
            with pytest.raises(errors.NotFound):
                c.get_user("usr_0190f5a0c2b87cc3a1b2c3d4e5f60718")
            assert [u.id for u in c.list_users() if u.id == user.id] == [user.id]
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("UserService/CreateUser OK") for m in messages)
    assert any(m.startswith("UserService/GetUser NOT_FOUND") for m in messages)
    assert [r.levelno for r in caplog.records if "NOT_FOUND" in r.getMessage()] == [logging.WARNING]
    assert metrics.count("CreateUser") == 1 and metrics.count("GetUser", "NOT_FOUND") == 1
    assert metrics.count("ListUsers") == 1 and metrics.in_flight == 0
    stats = metrics.snapshot()[("/courier.users.v1.UserService/CreateUser", "OK")]
    assert stats.count == 1 and sum(stats.buckets) == 1 and stats.seconds > 0

@pytest.fixture(scope="module")
def mtls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    """`courier up` serving TLS with client certificates required (the files of `courier dev certs`)."""
    base = tmp_path_factory.mktemp("courier-mtls")
    certs = base / "certs"
    binary = Server.binary()

    subprocess.run([binary, "dev", "certs", "--out", str(certs)], check=True, stdout=subprocess.DEVNULL)
    config = (
        "[tls]\n"
        f'cert = "{certs / "server.pem"}"\nkey = "{certs / "server.key"}"\nclient_ca = "{certs / "ca.pem"}"\n'
        f'ca = "{certs / "ca.pem"}"\nclient_cert = "{certs / "client.pem"}"\nclient_key = "{certs / "client.key"}"\n'
    )
    running = Server(base / "courier-data", config=config)
    try:
        yield running, certs
    finally:
        running.stop()

def test_mtls(mtls_server: tuple[Server, Path]) -> None:
    server, certs = mtls_server
    with Client(
        f"https://{server.address}", data_dir=server.data_dir, ca=certs / "ca.pem",
        cert=certs / "client.pem", key=(certs / "client.key").read_bytes(),
    ) as client:
        client.wait_ready(60)
        assert client.create_user("Over TLS", email()).id
    # Without a client certificate the handshake fails: UNAVAILABLE, never an answer.
    with Client(f"https://{server.address}", data_dir=server.data_dir, ca=certs / "ca.pem", retry=None) as client:
        with pytest.raises(errors.Unavailable):
            client.create_user("No cert", email(), timeout=5)
    with pytest.raises(ValueError):
        Client(f"http://{server.address}", cert=certs / "client.pem", key=certs / "client.key")
