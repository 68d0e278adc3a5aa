#!/usr/bin/env python3
"""Interop test: the official Python gRPC stack against courier's Rust server.

Run it through run.sh, which prepares the venv and the generated stubs.

Starts `$COURIER_BIN serve users` on a free port with a throwaway SQLite
database, then checks from a plain grpcio client:
  * the UserService contract (courier/users/v1/users.proto), including the
    error codes and the google.rpc.BadRequest details a client relies on;
  * grpc.health.v1.Health, via grpcio-health-checking;
  * server reflection v1alpha (via grpcio-reflection) and v1 (raw call);
  * that SIGTERM shuts the server down gracefully with exit status 0.

Prints one line per check and closes with `N passed, M failed`; exits 1 when
any check failed.
"""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import traceback
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
# run.sh generates the stubs here, as the package courier.users.v1.
sys.path.insert(0, str(HERE / "generated"))

import grpc  # noqa: E402
from google.protobuf import descriptor_pb2  # noqa: E402
from google.protobuf.descriptor_pool import DescriptorPool  # noqa: E402
from google.rpc import error_details_pb2  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from grpc_reflection.v1alpha import reflection_pb2  # noqa: E402
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (  # noqa: E402
    ProtoReflectionDescriptorDatabase,
)
from grpc_status import rpc_status  # noqa: E402

from courier.users.v1 import users_pb2, users_pb2_grpc  # noqa: E402

SERVICE = "courier.users.v1.UserService"
HEALTH_SERVICE = "grpc.health.v1.Health"
USERS_PROTO = "courier/users/v1/users.proto"
USER_METHODS = {"CreateUser", "GetUser", "ListUsers", "UpdateUserStatus"}

# The one stdout line the server prints once it accepts connections.
READY_LINE = re.compile(r"^courier: listening on (\S+:\d+)$")
# "usr_" + the 32 hex digits of a UUIDv7: version nibble 7, variant 10xx.
USER_ID = re.compile(r"^usr_[0-9a-f]{12}7[0-9a-f]{3}[89ab][0-9a-f]{15}$")
# Well-formed, but never handed out by a fresh server.
UNKNOWN_ID = "usr_0190f5a0c2b87cc3a1b2c3d4e5f60718"

RPC_TIMEOUT = 5.0  # seconds, for every unary call and every stream
START_TIMEOUT = 60.0  # a debug build migrating a new database can be slow
STOP_TIMEOUT = 15.0
BULK_USERS = 25

ACTIVE = users_pb2.USER_STATUS_ACTIVE
SUSPENDED = users_pb2.USER_STATUS_SUSPENDED

# A loopback test must never be routed through an http_proxy from the
# environment, which grpcio would otherwise honour.
CHANNEL_OPTIONS = [("grpc.enable_http_proxy", 0)]


# --------------------------------------------------------------------------
# The client, written the way the grpc.io Python tutorials write one.


class UserClient:
    """A small wrapper over the generated UserServiceStub."""

    def __init__(self, target: str, timeout: float = RPC_TIMEOUT):
        self._channel = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
        self._stub = users_pb2_grpc.UserServiceStub(self._channel)
        self._timeout = timeout

    def close(self) -> None:
        self._channel.close()

    def create_user(self, name: str, email: str) -> users_pb2.User:
        request = users_pb2.CreateUserRequest(name=name, email=email)
        return self._stub.CreateUser(request, timeout=self._timeout).user

    def get_user(self, user_id: str) -> users_pb2.User | None:
        """Returns the user, or None when the server answers NOT_FOUND."""
        try:
            request = users_pb2.GetUserRequest(id=user_id)
            return self._stub.GetUser(request, timeout=self._timeout).user
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise

    def list_users(
        self,
        status: int = users_pb2.USER_STATUS_UNSPECIFIED,
        page_size: int = 0,
        page_token: str = "",
    ):
        """Returns the response stream: iterate it, or cancel() it to stop early."""
        request = users_pb2.ListUsersRequest(
            status=status, page_size=page_size, page_token=page_token
        )
        return self._stub.ListUsers(request, timeout=self._timeout)

    def update_user_status(self, user_id: str, status: int) -> users_pb2.User:
        request = users_pb2.UpdateUserStatusRequest(id=user_id, status=status)
        return self._stub.UpdateUserStatus(request, timeout=self._timeout).user


# --------------------------------------------------------------------------
# The server under test.


class Server:
    """The courier binary, run as a child process with its own database."""

    def __init__(self, binary: str, data_dir: Path):
        self._stderr_path = data_dir / "server.stderr"
        self._stderr = open(self._stderr_path, "wb")
        self.argv = [
            binary, "serve", "users",
            "--listen", "127.0.0.1:0",
            "--database-url", f"sqlite://{data_dir}/users.db",
        ]
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        self.address: str | None = None
        self._stdout: list[str] = []
        self._ready = threading.Event()
        threading.Thread(target=self._pump_stdout, daemon=True).start()

    def _pump_stdout(self) -> None:
        # Read stdout for the whole life of the process, not just up to the
        # ready line: draining it keeps a chatty server from ever blocking on
        # a full pipe.
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self._stdout.append(line)
            if self.address is None:
                match = READY_LINE.match(line)
                if match:
                    self.address = match.group(1)
                    self._ready.set()
        self._ready.set()  # EOF: wake the waiter, which then finds no address

    def wait_listening(self, timeout: float) -> str:
        """Blocks until the ready line; returns the address it names."""
        if not self._ready.wait(timeout):
            raise AssertionError(
                f"no 'courier: listening on ADDR' line on stdout within {timeout:.0f} s"
            )
        if self.address is None:
            try:
                code = self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                code = "still running"
            raise AssertionError(
                f"server closed stdout (exit status {code}) before printing "
                "'courier: listening on ADDR'"
            )
        return self.address

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def close(self) -> None:
        self.kill()
        self._stderr.close()

    def output_tail(self, lines: int = 40) -> str:
        """The end of what the server printed, for a failure report."""
        err = self._stderr_path.read_text("utf-8", "replace").splitlines()
        parts = [f"$ {' '.join(self.argv)}"]
        parts.append(f"--- server stdout (last {lines} lines) ---")
        parts.extend(self._stdout[-lines:])
        parts.append(f"--- server stderr (last {lines} lines) ---")
        parts.extend(err[-lines:])
        return "\n".join(parts)


def wait_serving(target: str, deadline: float) -> None:
    """Waits, within a deadline, for the channel and then for health SERVING.

    The ready line says the port is bound; polling health as well proves the
    gRPC stack answers, without guessing at a fixed sleep.
    """
    with grpc.insecure_channel(target, options=CHANNEL_OPTIONS) as channel:
        try:
            grpc.channel_ready_future(channel).result(
                timeout=max(0.1, deadline - time.monotonic())
            )
        except grpc.FutureTimeoutError:
            raise AssertionError(f"channel to {target} not ready before the deadline")
        stub = health_pb2_grpc.HealthStub(channel)
        delay = 0.05
        while True:
            try:
                response = stub.Check(
                    health_pb2.HealthCheckRequest(service=""), timeout=RPC_TIMEOUT
                )
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                last = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                last = f"UNAVAILABLE: {e.details()}"
            if time.monotonic() + delay > deadline:
                raise AssertionError(f"health never reported SERVING; last answer: {last}")
            time.sleep(delay)  # backoff between polls, bounded by the deadline
            delay = min(delay * 2, 0.5)


# --------------------------------------------------------------------------
# Helpers for the checks.


class _CallDetails(
    collections.namedtuple(
        "_CallDetails",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,
):
    pass


class DefaultTimeout(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Gives every call on a channel a deadline.

    grpcio-reflection's descriptor database makes its calls without a timeout;
    this keeps a server that never answers from hanging the test.
    """

    def __init__(self, timeout: float):
        self._timeout = timeout

    def _details(self, d: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        if d.timeout is not None:
            return d
        return _CallDetails(
            d.method, self._timeout, d.metadata, d.credentials,
            getattr(d, "wait_for_ready", None), getattr(d, "compression", None),
        )

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_stream_stream(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)


def expect_rpc_error(code: grpc.StatusCode, fn: Callable, *args) -> grpc.RpcError:
    """Calls fn(*args), which must fail with `code`; returns the error."""
    try:
        fn(*args)
    except grpc.RpcError as e:
        assert e.code() == code, f"expected {code.name}, got {e.code().name}: {e.details()!r}"
        return e
    raise AssertionError(f"expected {code.name}, but the call succeeded")


def ids(responses) -> list[str]:
    return [r.user.id for r in responses]


def describe_difference(got: list[str], want: list[str]) -> str:
    """Says how two id lists differ, for an assertion message."""
    missing = [i for i in want if i not in set(got)]
    extra = [i for i in got if i not in set(want)]
    dupes = sorted({i for i in got if got.count(i) > 1})
    parts = [f"got {len(got)} ids, want {len(want)}"]
    if missing:
        parts.append(f"missing {missing[:5]}")
    if extra:
        parts.append(f"unexpected {extra[:5]}")
    if dupes:
        parts.append(f"duplicated {dupes[:5]}")
    if not (missing or extra or dupes):
        at = next(i for i, (g, w) in enumerate(zip(got, want)) if g != w)
        parts.append(f"same ids in another order: first differs at #{at}, got {got[at]}, want {want[at]}")
    parts.append(f"got is sorted by id: {got == sorted(got)}")
    return "; ".join(parts)


def need(value, what: str):
    """Fails a check whose precondition an earlier check did not establish."""
    if not value:
        raise AssertionError(f"not run: needs {what}, which an earlier check did not provide")
    return value


class Checks:
    """Runs named checks, prints each result, counts them."""

    def __init__(self):
        self.passed = 0
        self.failed: list[str] = []

    def run(self, name: str, fn: Callable[[], None]) -> bool:
        try:
            fn()
        except Exception as exc:  # any failure of a check is reported, not raised
            self.failed.append(name)
            print(f"FAIL {name}", flush=True)
            if isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
                print(f"     unexpected RPC error {exc.code().name}: {exc.details()!r}")
            elif isinstance(exc, AssertionError) and str(exc):
                print(f"     {exc}")
            else:
                print(textwrap.indent(traceback.format_exc().rstrip(), "     "))
            return False
        self.passed += 1
        print(f"ok   {name}", flush=True)
        return True

    def summary(self) -> str:
        return f"{self.passed} passed, {len(self.failed)} failed"


# --------------------------------------------------------------------------
# The checks.


class InteropChecks:
    """The checks against one running server, sharing the users they create."""

    def __init__(self, target: str):
        self.target = target
        self.client = UserClient(target)
        self.channel = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
        self.ada: users_pb2.User | None = None
        # Every user this run created, in creation order; the database is new,
        # so these are exactly the users the server holds.
        self.created: list[users_pb2.User] = []
        self.all_ids: list[str] = []

    def close(self) -> None:
        self.client.close()
        self.channel.close()

    # -- UserService -------------------------------------------------------

    def create_user(self) -> None:
        before = time.time()
        user = self.client.create_user("Ada Lovelace", "Ada@Example.com")
        assert USER_ID.match(user.id), (
            f"id {user.id!r} is not 'usr_' + 32 lowercase hex digits of a UUIDv7"
        )
        assert user.name == "Ada Lovelace", f"name {user.name!r}"
        assert user.email == "Ada@Example.com", f"email {user.email!r}, want it as given"
        assert user.status == ACTIVE, f"status {users_pb2.UserStatus.Name(user.status)}"
        assert user.HasField("created_at"), "created_at not set"
        # Catches a timestamp in the wrong unit or epoch, not clock skew.
        created = user.created_at.ToNanoseconds() / 1e9
        assert abs(created - before) < 300, (
            f"created_at {user.created_at.ToJsonString()} is far from now"
        )
        self.ada = user
        self.created.append(user)

    def get_user(self) -> None:
        ada = need(self.ada, "the user from CreateUser")
        got = self.client.get_user(ada.id)
        assert got is not None, f"GetUser({ada.id}) answered NOT_FOUND"
        assert got == ada, f"GetUser returned\n{got}\nbut CreateUser returned\n{ada}"

    def get_unknown_user(self) -> None:
        got = self.client.get_user(UNKNOWN_ID)
        assert got is None, f"GetUser({UNKNOWN_ID}) returned a user: {got}"

    def get_malformed_id(self) -> None:
        expect_rpc_error(grpc.StatusCode.INVALID_ARGUMENT, self.client.get_user, "123")

    def create_empty_name(self) -> None:
        e = expect_rpc_error(
            grpc.StatusCode.INVALID_ARGUMENT,
            self.client.create_user, "", "nobody@example.com",
        )
        # Raises ValueError if the Status in the trailer disagrees with the
        # call's own code or message, which grpc clients treat as an error.
        status = rpc_status.from_call(e)
        assert status is not None, "no grpc-status-details-bin trailer"
        violations = []
        for detail in status.details:
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad_request = error_details_pb2.BadRequest()
                detail.Unpack(bad_request)
                violations.extend(bad_request.field_violations)
        assert violations, (
            f"no google.rpc.BadRequest among the details: "
            f"{[d.type_url for d in status.details]}"
        )
        fields = [v.field for v in violations]
        assert "name" in fields, f"BadRequest names fields {fields}, not 'name'"
        assert all(v.description for v in violations), "a field violation has no description"

    def create_duplicate_email(self) -> None:
        need(self.ada, "the user from CreateUser")
        expect_rpc_error(
            grpc.StatusCode.ALREADY_EXISTS,
            self.client.create_user, "Ada Again", "ada@EXAMPLE.COM",
        )

    def list_all(self) -> None:
        for i in range(BULK_USERS):
            self.created.append(
                self.client.create_user(f"User {i:02d}", f"user{i:02d}@example.com")
            )
        want = [u.id for u in self.created]
        responses = list(self.client.list_users())
        got = ids(responses)
        if sorted(got) == sorted(want):
            # Every user, each once: the paging checks below can still compare
            # against the server's own order even if it is not creation order.
            self.all_ids = got
        assert got == want, "ListUsers did not stream every user in creation order: " + (
            describe_difference(got, want)
        )
        assert all(r.resume_token for r in responses), "a ListUsersResponse has no resume_token"
        for response, user in zip(responses, self.created):
            assert response.user == user, (
                f"ListUsers returned\n{response.user}\nbut CreateUser returned\n{user}"
            )

    def list_pages(self) -> None:
        want = need(self.all_ids, "the users listed by the ListUsers check")
        first = list(self.client.list_users(page_size=10))
        assert len(first) == 10, f"page_size=10 yielded {len(first)} users"
        got = ids(first)
        token = first[-1].resume_token
        for _ in range(len(want)):  # bounded: a token that never advances fails
            page = list(self.client.list_users(page_size=10, page_token=token))
            assert len(page) <= 10, f"page_size=10 yielded {len(page)} users"
            got.extend(ids(page))
            if len(page) < 10:
                break
            token = page[-1].resume_token
        assert got == want, "paging with resume tokens: " + describe_difference(got, want)

    def list_resume_after_cancel(self) -> None:
        want = need(self.all_ids, "the users listed by the ListUsers check")
        stream = self.client.list_users()
        seen = [next(stream) for _ in range(5)]
        stream.cancel()  # the client drops the stream mid-way...
        rest = list(self.client.list_users(page_token=seen[-1].resume_token))
        got = ids(seen) + ids(rest)  # ...and picks up after the last user it saw
        assert got == want, "resuming a cancelled stream: " + describe_difference(got, want)

    def suspend_user(self) -> None:
        all_ids = need(self.all_ids, "the users listed by the ListUsers check")
        target = all_ids[7]
        before = next(u for u in self.created if u.id == target)
        user = self.client.update_user_status(target, SUSPENDED)
        assert user.id == target, f"UpdateUserStatus returned user {user.id}"
        assert user.status == SUSPENDED, (
            f"UpdateUserStatus returned status {users_pb2.UserStatus.Name(user.status)}"
        )
        assert user.updated_at.ToNanoseconds() >= before.created_at.ToNanoseconds(), (
            f"updated_at {user.updated_at.ToJsonString()} is before created_at "
            f"{before.created_at.ToJsonString()}"
        )
        got = self.client.get_user(target)
        assert got is not None and got.status == SUSPENDED, f"GetUser after suspend: {got}"
        suspended = ids(self.client.list_users(status=SUSPENDED))
        assert suspended == [target], f"ListUsers(SUSPENDED) = {suspended}, want [{target}]"
        active = ids(self.client.list_users(status=ACTIVE))
        want_active = [i for i in all_ids if i != target]
        assert active == want_active, "ListUsers(ACTIVE): " + describe_difference(
            active, want_active
        )

    # -- grpc.health.v1 ----------------------------------------------------

    def _health(self, service: str) -> int:
        stub = health_pb2_grpc.HealthStub(self.channel)
        request = health_pb2.HealthCheckRequest(service=service)
        return stub.Check(request, timeout=RPC_TIMEOUT).status

    def health_serving(self, service: str) -> Callable[[], None]:
        def check() -> None:
            status = self._health(service)
            assert status == health_pb2.HealthCheckResponse.SERVING, (
                f"{service!r} is {health_pb2.HealthCheckResponse.ServingStatus.Name(status)}"
            )

        return check

    def health_unknown(self) -> None:
        expect_rpc_error(grpc.StatusCode.NOT_FOUND, self._health, "no.such.Service")

    # -- reflection --------------------------------------------------------

    def _reflection_db(self, channel: grpc.Channel) -> ProtoReflectionDescriptorDatabase:
        return ProtoReflectionDescriptorDatabase(
            grpc.intercept_channel(channel, DefaultTimeout(RPC_TIMEOUT))
        )

    def reflection_v1alpha_services(self) -> None:
        services = set(self._reflection_db(self.channel).get_services())
        for name in (SERVICE, HEALTH_SERVICE):
            assert name in services, f"{name} not among the listed services {sorted(services)}"

    def reflection_v1alpha_descriptor(self) -> None:
        db = self._reflection_db(self.channel)
        # A fresh pool over the reflection database resolves the service and
        # every file it depends on (google/protobuf/timestamp.proto) from the
        # server alone, independently of the generated stubs.
        pool = DescriptorPool(db)
        service = pool.FindServiceByName(SERVICE)
        assert service.file.name == USERS_PROTO, f"service defined in {service.file.name}"
        methods = set(service.methods_by_name)
        assert methods == USER_METHODS, f"methods {sorted(methods)}"
        list_users = descriptor_pb2.MethodDescriptorProto()
        service.methods_by_name["ListUsers"].CopyToProto(list_users)
        assert list_users.server_streaming and not list_users.client_streaming, (
            f"ListUsers is not server-streaming: {list_users}"
        )
        user = pool.FindMessageTypeByName("courier.users.v1.User")
        created_at = user.fields_by_name["created_at"]
        assert created_at.message_type.full_name == "google.protobuf.Timestamp"

    def reflection_v1(self) -> None:
        # grpcio-reflection ships stubs for v1alpha only. The v1 messages are
        # wire-identical (same fields, same numbers), so the v1alpha classes
        # serialize a raw call to the v1 method.
        call = self.channel.stream_stream(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        requests = [
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE),
        ]
        responses = list(call(iter(requests), timeout=RPC_TIMEOUT))
        assert len(responses) == 2, f"{len(responses)} responses to 2 requests"
        listed, found = responses
        assert listed.WhichOneof("message_response") == "list_services_response", (
            f"list_services answered {listed.WhichOneof('message_response')}: {listed}"
        )
        services = {s.name for s in listed.list_services_response.service}
        for name in (SERVICE, HEALTH_SERVICE):
            assert name in services, f"{name} not among the listed services {sorted(services)}"
        assert found.WhichOneof("message_response") == "file_descriptor_response", (
            f"file_containing_symbol answered {found.WhichOneof('message_response')}: {found}"
        )
        files = {}
        for raw in found.file_descriptor_response.file_descriptor_proto:
            fdp = descriptor_pb2.FileDescriptorProto.FromString(raw)
            files[fdp.name] = fdp
        assert USERS_PROTO in files, f"files returned: {sorted(files)}"
        services = {s.name: s for s in files[USERS_PROTO].service}
        assert "UserService" in services, f"services in {USERS_PROTO}: {sorted(services)}"
        methods = {m.name for m in services["UserService"].method}
        assert methods == USER_METHODS, f"methods {sorted(methods)}"


def main() -> int:
    binary = os.environ.get("COURIER_BIN", str(ROOT / "target" / "debug" / "courier"))
    if not os.access(binary, os.X_OK):
        print(f"interop_test: courier binary not found or not executable: {binary}")
        return 1

    checks = Checks()
    with tempfile.TemporaryDirectory(prefix="courier-interop-") as data_dir:
        server = Server(binary, Path(data_dir))
        suite = None
        try:
            target = None

            def start() -> None:
                nonlocal target
                deadline = time.monotonic() + START_TIMEOUT
                target = server.wait_listening(START_TIMEOUT)
                wait_serving(target, deadline)

            if checks.run("server starts, prints its address and reports SERVING", start):
                suite = InteropChecks(target)
                s = suite
                for name, fn in [
                    ("CreateUser returns an ACTIVE user with a usr_ id and created_at", s.create_user),
                    ("GetUser returns the created user", s.get_user),
                    ("GetUser of an unknown id is NOT_FOUND (client returns None)", s.get_unknown_user),
                    ("GetUser of a malformed id is INVALID_ARGUMENT", s.get_malformed_id),
                    ("CreateUser with an empty name is INVALID_ARGUMENT with BadRequest 'name'", s.create_empty_name),
                    ("CreateUser with a duplicate email in other case is ALREADY_EXISTS", s.create_duplicate_email),
                    (f"ListUsers streams all {BULK_USERS + 1} users in creation order", s.list_all),
                    ("ListUsers pages of 10 resume by token without gaps or duplicates", s.list_pages),
                    ("ListUsers resumes after a cancelled stream", s.list_resume_after_cancel),
                    ("UpdateUserStatus SUSPENDED; ListUsers filters by status", s.suspend_user),
                    ("health Check '' is SERVING", s.health_serving("")),
                    (f"health Check '{SERVICE}' is SERVING", s.health_serving(SERVICE)),
                    ("health Check of an unknown service is NOT_FOUND", s.health_unknown),
                    ("reflection v1alpha lists the user and health services", s.reflection_v1alpha_services),
                    ("reflection v1alpha resolves UserService and its dependencies", s.reflection_v1alpha_descriptor),
                    ("reflection v1 lists services and returns users.proto", s.reflection_v1),
                ]:
                    checks.run(name, fn)

                # The client's channels stay open on purpose: a server must shut
                # down gracefully even while clients hold idle connections.
                def stop() -> None:
                    server.proc.terminate()
                    try:
                        code = server.proc.wait(timeout=STOP_TIMEOUT)
                    except subprocess.TimeoutExpired:
                        raise AssertionError(
                            f"still running {STOP_TIMEOUT:.0f} s after SIGTERM "
                            "(with idle client connections open)"
                        )
                    assert code == 0, f"exit status {code} after SIGTERM, want 0"

                checks.run("SIGTERM shuts the server down with exit status 0", stop)
        finally:
            if suite is not None:
                suite.close()
            server.close()
            if checks.failed:
                print(server.output_tail())

    print(checks.summary())
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
