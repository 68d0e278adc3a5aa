"""Retries by the service config (gRFC A6): which methods gRPC retries, and that a retried call keeps its key.

courier never answers UNAVAILABLE on demand, so the server here is a grpcio server on a real port of
127.0.0.1 whose methods fail their first attempt with UNAVAILABLE (what a restarting or overloaded courier
says); the retrying itself is grpcio's, configured by the client's service config.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from courier.payments.v1 import payments_pb2, payments_pb2_grpc
from courier.users.v1 import users_pb2, users_pb2_grpc

from courier_client import AsyncClient, Client, RetryPolicy, errors


class Flaky:
    """Counts the attempts of each method and fails the first `failures` of each with UNAVAILABLE."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts: dict[str, list[dict[str, str]]] = {}
        self.keys: list[str] = []
        self.lock = threading.Lock()

    def attempt(self, method: str, context: grpc.ServicerContext) -> None:
        metadata = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        with self.lock:
            seen = self.attempts.setdefault(method, [])
            seen.append(metadata)
            failing = len(seen) <= self.failures
        if failing:
            context.abort(grpc.StatusCode.UNAVAILABLE, "try again")


class Users(users_pb2_grpc.UserServiceServicer):
    def __init__(self, flaky: Flaky) -> None:
        self.flaky = flaky

    def GetUser(self, request: users_pb2.GetUserRequest, context: grpc.ServicerContext) -> users_pb2.GetUserResponse:
        self.flaky.attempt("GetUser", context)
        return users_pb2.GetUserResponse(user=users_pb2.User(id=request.id))

    def CreateUser(
        self, request: users_pb2.CreateUserRequest, context: grpc.ServicerContext
    ) -> users_pb2.CreateUserResponse:
        self.flaky.attempt("CreateUser", context)
        return users_pb2.CreateUserResponse(user=users_pb2.User(id="usr_new", name=request.name))


class Payments(payments_pb2_grpc.PaymentServiceServicer):
    def __init__(self, flaky: Flaky) -> None:
        self.flaky = flaky

    def Authorize(
        self, request: payments_pb2.AuthorizeRequest, context: grpc.ServicerContext
    ) -> payments_pb2.AuthorizeResponse:
        with self.flaky.lock:
            self.flaky.keys.append(request.idempotency_key)
        self.flaky.attempt("Authorize", context)
        return payments_pb2.AuthorizeResponse(authorization=payments_pb2.Authorization(id="auth_1"))


@pytest.fixture
def flaky() -> Iterator[tuple[str, Flaky]]:
    state = Flaky(failures=1)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    # Only the methods the tests call are implemented (the others answer UNIMPLEMENTED).
    users_pb2_grpc.add_UserServiceServicer_to_server(Users(state), server)  # type: ignore[abstract]
    payments_pb2_grpc.add_PaymentServiceServicer_to_server(Payments(state), server)  # type: ignore[abstract]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", state
    finally:
        server.stop(None)


def test_idempotent_methods_are_retried(flaky: tuple[str, Flaky]) -> None:
    address, state = flaky
    with Client(address, token="t") as client:
        assert client.get_user("usr_1").id == "usr_1"
        assert client.authorize("acct_1", 10, "USD", merchant_id="m").id == "auth_1"
    get_user = state.attempts["GetUser"]
    assert len(get_user) == 2 and get_user[1].get("grpc-previous-rpc-attempts") == "1"
    # Both attempts of Authorize carried the one key the client generated, so the server applies it once.
    assert len(state.keys) == 2 and state.keys[0] == state.keys[1] != ""


def test_other_methods_are_not(flaky: tuple[str, Flaky]) -> None:
    address, state = flaky
    with Client(address, token="t") as client, pytest.raises(errors.Unavailable) as caught:
        client.create_user("Ada", "ada@example.com")
    assert len(state.attempts["CreateUser"]) == 1 and caught.value.message == "try again"


def test_retry_none_disables_and_the_policy_is_configurable(flaky: tuple[str, Flaky]) -> None:
    address, state = flaky
    with Client(address, retry=None) as client, pytest.raises(errors.Unavailable):
        client.get_user("usr_1")
    state.failures = 1 + 3  # the attempt above, then three more: a fourth attempt is needed
    with Client(address, retry=RetryPolicy(max_attempts=4)) as client:
        assert client.get_user("usr_1").id == "usr_1"
    assert len(state.attempts["GetUser"]) == 1 + 4


async def test_the_async_client_retries_too(flaky: tuple[str, Flaky]) -> None:
    address, state = flaky
    async with AsyncClient(address) as client:
        assert (await client.get_user("usr_1")).id == "usr_1"
        with pytest.raises(errors.Unavailable):
            await client.create_user("Ada", "ada@example.com")
    assert len(state.attempts["GetUser"]) == 2 and len(state.attempts["CreateUser"]) == 1
