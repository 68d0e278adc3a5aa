#!/usr/bin/env python3
"""Interop test: the official Python gRPC stack against courier's Rust server.

Run it through run.sh, which prepares the venv and the generated stubs, and
runs this file twice: with stubs of proto/ and with stubs of the release
contract (proto/baseline.binpb, in COURIER_STUBS).

Starts `$COURIER_BIN up` (UserService, PaymentService and RiskService in one
process; PaymentService asks UserService about account holders and
RiskService about every authorization on the process's own address) on a
free port with a throwaway data directory and a rules file of two rule sets,
then checks from plain grpcio clients (generated stubs, unary calls without
metadata, generators and iterators for streams):
  * the UserService contract (courier/users/v1/users.proto), including the
    error codes and the google.rpc.BadRequest details a client relies on;
  * the PaymentService contract (courier/payments/v1/payments.proto):
    accounts and balances; UpdateAccountStatus (FROZEN declines with 57, a
    same-status update changes nothing, CLOSED is final: FAILED_PRECONDITION
    ACCOUNT_CLOSED; INVALID_ARGUMENT + BadRequest, NOT_FOUND); Authorize
    approving, declining with a response code (a normal answer, not an RPC
    error), replaying by idempotency key and refusing a reused key
    (ALREADY_EXISTS + google.rpc.ErrorInfo) or a malformed request
    (INVALID_ARGUMENT + google.rpc.BadRequest); Capture, and Void refused
    after it (FAILED_PRECONDITION + ErrorInfo); ListAuthorizations;
    AuthorizeStream (bidirectional: one answer per correlation id, a bad
    message answered with its own google.rpc.Status while the stream goes
    on); BatchCapture (client streaming: a summary that lists failed items by
    index); WatchEvents (server streaming: the whole event log from sequence
    1, gap-free and matching what this run did, then a live event);
  * the RiskService contract (courier/risk/v1/risk.proto): Score (ALLOW, a
    deny rule's DENY with its reason, INVALID_ARGUMENT + BadRequest on every
    bad field); GetRuleSet (the active set, a named one, the rollout and the
    rules file; NOT_FOUND, INVALID_ARGUMENT); SetRollout (SHADOW, then
    PERCENTAGE 100, each seen in Score's answer; CANDIDATE_IS_ACTIVE,
    NOT_FOUND, INVALID_ARGUMENT); GetRolloutStats (exact counters of a fresh
    rollout, both disagreement directions; PERMISSION_DENIED for a token with
    risk:score only); ReloadRules (back to the file's rollout; a broken file
    is FAILED_PRECONDITION RULES_INVALID and leaves the rules in force);
  * that every RPC of the three services in the stubs in use was called;
  * grpc.health.v1.Health, via grpcio-health-checking;
  * server reflection v1alpha (via grpcio-reflection) and v1 (raw call);
  * that SIGTERM shuts the server down gracefully with exit status 0.

Error details are read the way grpcio-status documents it:
grpc_status.rpc_status.from_call(error), then Any.Unpack into the
google.rpc.error_details_pb2 types. google.rpc.* comes from
googleapis-common-protos, never from generated stubs.

A check that needs an RPC or field the stubs in use do not have is skipped
only in the baseline pass (COURIER_STUBS set: the release contract may
predate it), with a `skip` line naming what is missing; with the current
stubs the same gap is a failure.

Prints one line per check and closes with `N passed, M failed, K skipped`;
exits 1 when any check failed.
"""

from __future__ import annotations

import collections
import functools
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import traceback
import uuid
from pathlib import Path
from typing import Callable, Iterable, Iterator

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
# run.sh generates the stubs here, as the packages courier.users.v1,
# courier.payments.v1 and courier.risk.v1 (google.rpc.status_pb2 comes from
# googleapis-common-protos).
# run.sh points COURIER_STUBS at the stubs of the release contract (proto/baseline.binpb) for its second pass:
# clients generated from the last release keep working against this server.
STUBS = os.environ.get("COURIER_STUBS", str(HERE / "generated"))
# Only the release contract's stubs may lack an RPC or a field this test knows (it may predate them).
BASELINE_PASS = "COURIER_STUBS" in os.environ
sys.path.insert(0, STUBS)

import grpc  # noqa: E402
from google.protobuf import descriptor_pb2, descriptor_pool  # noqa: E402
from google.protobuf.descriptor_pool import DescriptorPool  # noqa: E402
from google.rpc import error_details_pb2  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from grpc_reflection.v1alpha import reflection_pb2  # noqa: E402
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (  # noqa: E402
    ProtoReflectionDescriptorDatabase,
)
from grpc_status import rpc_status  # noqa: E402

from courier.payments.v1 import payments_pb2, payments_pb2_grpc  # noqa: E402
from courier.risk.v1 import risk_pb2, risk_pb2_grpc  # noqa: E402
from courier.users.v1 import users_pb2, users_pb2_grpc  # noqa: E402

SERVICE = "courier.users.v1.UserService"
HEALTH_SERVICE = "grpc.health.v1.Health"
USERS_PROTO = "courier/users/v1/users.proto"
USER_METHODS = {"CreateUser", "GetUser", "ListUsers", "UpdateUserStatus"}
PAYMENTS_SERVICE = "courier.payments.v1.PaymentService"
PAYMENTS_PROTO = "courier/payments/v1/payments.proto"
PAYMENT_METHODS = {
    "OpenAccount", "GetAccount", "CreditAccount", "UpdateAccountStatus",
    "Authorize", "Capture", "Void", "GetAuthorization", "ListAuthorizations",
    "AuthorizeStream", "BatchCapture", "WatchEvents",
}
RISK_SERVICE = "courier.risk.v1.RiskService"
# Every RPC of these must be called by some check (the last check before SIGTERM).
CONTRACT_SERVICES = (SERVICE, PAYMENTS_SERVICE, RISK_SERVICE)

# The one stdout line the server prints once it accepts connections.
READY_LINE = re.compile(r"^courier: listening on (\S+:\d+)$")


def uuid7_id(prefix: str) -> re.Pattern:
    """prefix + the 32 hex digits of a UUIDv7: version nibble 7, variant 10xx."""
    return re.compile(rf"^{prefix}[0-9a-f]{{12}}7[0-9a-f]{{3}}[89ab][0-9a-f]{{15}}$")


USER_ID = uuid7_id("usr_")
ACCOUNT_ID = uuid7_id("acct_")
AUTHORIZATION_ID = uuid7_id("auth_")
# Well-formed, but never handed out by a fresh server.
UNKNOWN_ID = "usr_0190f5a0c2b87cc3a1b2c3d4e5f60718"
UNKNOWN_AUTHORIZATION_ID = "auth_0190f5a0c2b87cc3a1b2c3d4e5f60718"
UNKNOWN_ACCOUNT_ID = "acct_0190f5a0c2b87cc3a1b2c3d4e5f60718"

RPC_TIMEOUT = 5.0  # seconds, for every unary call and every stream
START_TIMEOUT = 60.0  # a debug build migrating a new database can be slow
STOP_TIMEOUT = 15.0
BULK_USERS = 25

ACTIVE = users_pb2.USER_STATUS_ACTIVE
SUSPENDED = users_pb2.USER_STATUS_SUSPENDED

# The ErrorInfo domain of every PaymentService (RiskService) error reason.
PAYMENTS_DOMAIN = "payments.courier.dev"
RISK_DOMAIN = "risk.courier.dev"
MERCHANT = "m_interop-python"
CURRENCY = "USD"
STREAM_REQUESTS = 50  # AuthorizeStream: this many messages in one stream...
STREAM_MALFORMED = 25  # ...the one at this index malformed (amount 0)...
STREAM_DECLINED = 40  # ...and the one at this index above any balance.
BATCH_GOOD = 5  # BatchCapture: this many held authorizations, plus two bad items

ACCOUNT_ACTIVE = payments_pb2.ACCOUNT_STATUS_ACTIVE
ACCOUNT_FROZEN = payments_pb2.ACCOUNT_STATUS_FROZEN
ACCOUNT_CLOSED = payments_pb2.ACCOUNT_STATUS_CLOSED
CAPTURED = payments_pb2.AUTHORIZATION_STATUS_CAPTURED

# A loopback test must never be routed through an http_proxy from the
# environment, which grpcio would otherwise honour.
CHANNEL_OPTIONS = [("grpc.enable_http_proxy", 0)]

# The server runs TLS (certificates from `courier dev certs`) and checks bearer
# tokens (`courier up` writes one with every scope to its data dir by default).
# main() fills these in before any channel is opened.
TLS = {"ca": b"", "token": ""}


def open_channel(target: str, token: str | None = None) -> grpc.Channel:
    """A TLS channel that sends `token` (default: the dev token) on every call.

    token="" sends none. The token goes as `authorization: Bearer ...`, the way
    any gRPC client attaches one (grpc.access_token_call_credentials). Every
    call on it is noted in CALLS, for the check that every RPC was called.
    """
    credentials = grpc.ssl_channel_credentials(root_certificates=TLS["ca"])
    token = TLS["token"] if token is None else token
    if token:
        credentials = grpc.composite_channel_credentials(
            credentials, grpc.access_token_call_credentials(token)
        )
    channel = grpc.secure_channel(target, credentials, options=CHANNEL_OPTIONS)
    return grpc.intercept_channel(channel, CALLS)


# --------------------------------------------------------------------------
# The client, written the way the grpc.io Python tutorials write one.


class UserClient:
    """A small wrapper over the generated UserServiceStub."""

    def __init__(self, target: str, timeout: float = RPC_TIMEOUT):
        self._channel = open_channel(target)
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


def new_idempotency_key() -> str:
    return f"interop-{uuid.uuid4()}"


class PaymentClient:
    """A small wrapper over the generated PaymentServiceStub.

    Money-moving calls take an idempotency key: a fresh one by default, or the
    caller's, to retry (or replay) a request.
    """

    def __init__(self, target: str, timeout: float = RPC_TIMEOUT):
        self._channel = open_channel(target)
        self._stub = payments_pb2_grpc.PaymentServiceStub(self._channel)
        self._timeout = timeout

    def close(self) -> None:
        self._channel.close()

    def open_account(
        self, owner_user_id: str, currency: str, credit_limit: int = 0
    ) -> payments_pb2.Account:
        request = payments_pb2.OpenAccountRequest(
            owner_user_id=owner_user_id, currency=currency, credit_limit=credit_limit
        )
        return self._stub.OpenAccount(request, timeout=self._timeout).account

    def get_account(self, account_id: str) -> payments_pb2.Account:
        request = payments_pb2.GetAccountRequest(account_id=account_id)
        return self._stub.GetAccount(request, timeout=self._timeout).account

    def update_account_status(self, account_id: str, status: int) -> payments_pb2.Account:
        request = payments_pb2.UpdateAccountStatusRequest(account_id=account_id, status=status)
        return self._stub.UpdateAccountStatus(request, timeout=self._timeout).account

    def credit_account(
        self, account_id: str, amount: int, currency: str, idempotency_key: str | None = None
    ) -> payments_pb2.CreditAccountResponse:
        request = payments_pb2.CreditAccountRequest(
            account_id=account_id,
            amount=amount,
            currency=currency,
            idempotency_key=idempotency_key or new_idempotency_key(),
        )
        return self._stub.CreditAccount(request, timeout=self._timeout)

    def authorize(
        self,
        account_id: str,
        amount: int,
        currency: str,
        merchant_id: str = MERCHANT,
        idempotency_key: str | None = None,
        description: str = "",
        metadata: dict[str, str] | None = None,
    ) -> payments_pb2.Authorization:
        """Returns the authorization, approved or declined: a decline is no error."""
        request = payments_pb2.AuthorizeRequest(
            idempotency_key=idempotency_key or new_idempotency_key(),
            account_id=account_id,
            merchant_id=merchant_id,
            amount=amount,
            currency=currency,
            description=description,
            metadata=metadata or {},
        )
        return self._stub.Authorize(request, timeout=self._timeout).authorization

    def capture(
        self, authorization_id: str, amount: int = 0, idempotency_key: str | None = None
    ) -> payments_pb2.Authorization:
        """Captures `amount` of the hold; 0 captures all of it."""
        request = payments_pb2.CaptureRequest(
            authorization_id=authorization_id,
            amount=amount,
            idempotency_key=idempotency_key or new_idempotency_key(),
        )
        return self._stub.Capture(request, timeout=self._timeout).authorization

    def void(
        self, authorization_id: str, idempotency_key: str | None = None
    ) -> payments_pb2.Authorization:
        request = payments_pb2.VoidRequest(
            authorization_id=authorization_id,
            idempotency_key=idempotency_key or new_idempotency_key(),
        )
        return self._stub.Void(request, timeout=self._timeout).authorization

    def get_authorization(self, authorization_id: str) -> payments_pb2.Authorization:
        request = payments_pb2.GetAuthorizationRequest(authorization_id=authorization_id)
        return self._stub.GetAuthorization(request, timeout=self._timeout).authorization

    def list_authorizations(self, account_id: str = "", status: int = 0):
        """Returns the response stream of ListAuthorizationsResponse."""
        request = payments_pb2.ListAuthorizationsRequest(account_id=account_id, status=status)
        return self._stub.ListAuthorizations(request, timeout=self._timeout)

    def authorize_stream(self, requests: Iterator[payments_pb2.AuthorizeStreamRequest]):
        """Sends what the iterator yields; returns the stream of answers.

        The stream is half-closed when the iterator is exhausted. Answers come
        in completion order: pair them with requests by correlation id.
        """
        return self._stub.AuthorizeStream(requests, timeout=self._timeout)

    def batch_capture(
        self, captures: Iterable[payments_pb2.CaptureRequest]
    ) -> payments_pb2.BatchCaptureResponse:
        def requests():
            for capture in captures:
                yield payments_pb2.BatchCaptureRequest(capture=capture)

        return self._stub.BatchCapture(requests(), timeout=self._timeout)

    def watch_events(self, from_sequence: int = 1, account_id: str = "", timeout: float | None = None):
        """Returns the event stream. It never ends by itself (after the backlog
        it follows new commits): read what you need, then cancel() it. The
        timeout bounds the whole call."""
        request = payments_pb2.WatchEventsRequest(from_sequence=from_sequence, account_id=account_id)
        return self._stub.WatchEvents(request, timeout=timeout or self._timeout)


class RiskClient:
    """A small wrapper over the generated RiskServiceStub.

    token: the bearer token to send instead of the dev token (a narrower one).
    """

    def __init__(self, target: str, token: str | None = None, timeout: float = RPC_TIMEOUT):
        self._channel = open_channel(target, token=token)
        self._stub = risk_pb2_grpc.RiskServiceStub(self._channel)
        self._timeout = timeout

    def close(self) -> None:
        self._channel.close()

    def score(
        self,
        account_id: str,
        merchant_id: str,
        amount: int,
        currency: str,
        available_amount: int | None = None,
    ) -> risk_pb2.ScoreResponse:
        request = risk_pb2.ScoreRequest(
            account_id=account_id, merchant_id=merchant_id, amount=amount, currency=currency
        )
        if available_amount is not None:  # an optional field: unset is not 0
            request.available_amount = available_amount
        return self._stub.Score(request, timeout=self._timeout)

    def score_batch(self, requests: list) -> risk_pb2.ScoreBatchResponse:
        """ScoreBatch of `requests` (risk_pb2.ScoreRequest), scored in order."""
        request = risk_pb2.ScoreBatchRequest(requests=requests)
        return self._stub.ScoreBatch(request, timeout=self._timeout)

    def get_rule_set(self, version: str = "") -> risk_pb2.GetRuleSetResponse:
        """The rule set `version` (default: the active one), with the rollout."""
        request = risk_pb2.GetRuleSetRequest(version=version)
        return self._stub.GetRuleSet(request, timeout=self._timeout)

    def set_rollout(self, version: str, mode: int, percent: int = 0) -> risk_pb2.SetRolloutResponse:
        request = risk_pb2.SetRolloutRequest(version=version, mode=mode, percent=percent)
        return self._stub.SetRollout(request, timeout=self._timeout)

    def reload_rules(self) -> risk_pb2.ReloadRulesResponse:
        return self._stub.ReloadRules(risk_pb2.ReloadRulesRequest(), timeout=self._timeout)

    def get_rollout_stats(self) -> risk_pb2.GetRolloutStatsResponse:
        return self._stub.GetRolloutStats(risk_pb2.GetRolloutStatsRequest(), timeout=self._timeout)


# --------------------------------------------------------------------------
# The server under test.


DENIED_MERCHANT = "mch_known_fraud"
RULES_ACTIVE = "interop-1"  # the file's active rule set
RULES_CANDIDATE = "interop-2"  # the RiskService checks roll it out
REVIEW_ABOVE = 50_000  # the candidate's REVIEW rule fires above this amount
REVIEW_SCORE = 600  # at or above review_at (500), below deny_at (800): REVIEW


def risk_rules(active: str = RULES_ACTIVE) -> str:
    """The rules file: the active set denies one merchant; the candidate does
    too, and reviews large amounts. `active` other than a loaded version
    makes a file that does not validate (the ReloadRules error check)."""
    deny_list = f"""
[[rule_set.merchant_deny_list]]
id = "merchant.denied"
merchants = ["{DENIED_MERCHANT}"]
deny = true
"""
    return f"""
[rollout]
active = "{active}"

[[rule_set]]
version = "{RULES_ACTIVE}"
{deny_list}
[[rule_set]]
version = "{RULES_CANDIDATE}"
{deny_list}
[[rule_set.amount_above]]
id = "amount.review"
amount = {REVIEW_ABOVE}
score = {REVIEW_SCORE}
"""


def write_atomically(path: Path, text: str) -> None:
    """Replaces path's contents in one step: the server polls the rules file,
    and must never read half of one."""
    part = path.with_name(path.name + ".part")
    part.write_text(text)
    os.replace(part, path)


class Server:
    """The courier binary, run as a child process with its own database."""

    def __init__(self, binary: str, data_dir: Path):
        self._stderr_path = data_dir / "server.stderr"
        self._stderr = open(self._stderr_path, "wb")
        # Every service in one process, its SQLite store under data_dir. Risk
        # runs this file's rules: a merchant deny list (so a risk decline can
        # be checked), a candidate rule set for the rollout checks, and no
        # velocity rule (the stream checks send 50 at once).
        self.binary = binary
        self.rules_file = data_dir / "risk-rules.toml"
        self.rules_file.write_text(risk_rules())
        rules = self.rules_file
        # TLS from `courier dev certs`; `up` writes its development token to data_dir.
        certs = data_dir / "certs"
        subprocess.run(
            [binary, "dev", "certs", "--out", str(certs)],
            check=True, stdout=subprocess.DEVNULL,
        )
        config = data_dir / "courier.toml"
        config.write_text(
            "[tls]\n"
            f'cert = "{certs / "server.pem"}"\n'
            f'key = "{certs / "server.key"}"\n'
            f'ca = "{certs / "ca.pem"}"\n'
        )
        TLS["ca"] = (certs / "ca.pem").read_bytes()
        self.token_path = data_dir / "token"
        self.secret_path = data_dir / "dev-secret"  # `up` creates it; tokens are signed with it
        self.argv = [
            binary, "up", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
            "--data-dir", str(data_dir), "--config", str(config),
        ]
        self.proc = subprocess.Popen(
            self.argv,
            env=dict(os.environ, COURIER_RISK__RULES_FILE=str(rules)),
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

    def token_with(self, *scopes: str) -> str:
        """A token with only these scopes, signed by `courier dev token` with the server's secret."""
        out = subprocess.run(
            [
                self.binary, "dev", "token", "--secret-file", str(self.secret_path),
                "--subject", "interop-narrow", "--scopes", ",".join(scopes), "--ttl", "10m",
            ],
            check=True, capture_output=True, text=True,
        )
        return out.stdout.strip()

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
    with open_channel(target) as channel:
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


class CallRecorder(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Notes the full name (package.Service.Method) of every method called."""

    def __init__(self):
        self.methods: set[str] = set()

    def _note(self, details: grpc.ClientCallDetails) -> None:
        self.methods.add(details.method.lstrip("/").replace("/", "."))

    def intercept_unary_unary(self, continuation, details, request):
        self._note(details)
        return continuation(details, request)

    def intercept_unary_stream(self, continuation, details, request):
        self._note(details)
        return continuation(details, request)

    def intercept_stream_unary(self, continuation, details, request_iterator):
        self._note(details)
        return continuation(details, request_iterator)

    def intercept_stream_stream(self, continuation, details, request_iterator):
        self._note(details)
        return continuation(details, request_iterator)


# Every channel of the test notes its calls here (see open_channel).
CALLS = CallRecorder()


def absent_from_stubs(names: Iterable[str]) -> list[str]:
    """Of these full names of methods (package.Service.Method) and fields
    (package.Message.field), the ones the generated stubs in use lack."""
    pool = descriptor_pool.Default()
    absent = []
    for name in names:
        for find in (pool.FindMethodByName, pool.FindFieldByName):
            try:
                find(name)
                break
            except KeyError:
                continue
        else:
            absent.append(name)
    return absent


def expect_rpc_error(code: grpc.StatusCode, fn: Callable, *args) -> grpc.RpcError:
    """Calls fn(*args), which must fail with `code`; returns the error."""
    try:
        fn(*args)
    except grpc.RpcError as e:
        assert e.code() == code, f"expected {code.name}, got {e.code().name}: {e.details()!r}"
        return e
    raise AssertionError(f"expected {code.name}, but the call succeeded")


def code_name(code: int) -> str:
    """The name of a google.rpc.Status code (the numbers are grpc.StatusCode's)."""
    names = {c.value[0]: c.name for c in grpc.StatusCode}
    return names.get(code, f"code {code}")


def rich_status(error: grpc.RpcError):
    """The google.rpc.Status in an RPC error's grpc-status-details-bin trailer."""
    # Raises ValueError if the Status in the trailer disagrees with the call's
    # own code or message, which grpc clients treat as an error.
    status = rpc_status.from_call(error)
    assert status is not None, "no grpc-status-details-bin trailer"
    return status


def unpack_details(status, message_type) -> list:
    """The details of one type among a google.rpc.Status's details, unpacked."""
    found = []
    for detail in status.details:
        if detail.Is(message_type.DESCRIPTOR):
            message = message_type()
            detail.Unpack(message)
            found.append(message)
    return found


def field_violations(status) -> list:
    """Every google.rpc.BadRequest field violation of a status; at least one."""
    violations = [
        v
        for bad_request in unpack_details(status, error_details_pb2.BadRequest)
        for v in bad_request.field_violations
    ]
    assert violations, (
        f"no google.rpc.BadRequest among the details: {[d.type_url for d in status.details]}"
    )
    assert all(v.description for v in violations), "a field violation has no description"
    return violations


def error_info(status, domain: str) -> error_details_pb2.ErrorInfo:
    """The one google.rpc.ErrorInfo of an error, which must be of `domain`."""
    infos = unpack_details(status, error_details_pb2.ErrorInfo)
    assert len(infos) == 1, (
        f"want one google.rpc.ErrorInfo among the details, found {len(infos)}: "
        f"{[d.type_url for d in status.details]}"
    )
    assert infos[0].domain == domain, f"ErrorInfo domain {infos[0].domain!r}, want {domain!r}"
    return infos[0]


def error_reason(status, domain: str = PAYMENTS_DOMAIN) -> str:
    """The reason of the one google.rpc.ErrorInfo of a PaymentService (or `domain`) error."""
    return error_info(status, domain).reason


def rollout_key(rollout: risk_pb2.Rollout) -> tuple:
    """A rollout without its start time, for comparisons."""
    return (
        rollout.active_version, rollout.candidate_version,
        risk_pb2.RolloutMode.Name(rollout.candidate_mode), rollout.percent,
    )


def score_key(answer: risk_pb2.ScoreResponse) -> tuple:
    """What a Score answer decided, and by which set; the shadow's verdict or None."""
    shadow = None
    if answer.HasField("shadow"):
        shadow = (
            answer.shadow.rule_set_version, answer.shadow.score,
            risk_pb2.RiskDecision.Name(answer.shadow.decision),
        )
    return (
        answer.rule_set_version, answer.score, risk_pb2.RiskDecision.Name(answer.decision),
        answer.decided_by_candidate, shadow,
    )


def assert_balances(account: payments_pb2.Account, *, posted: int, held: int, what: str) -> None:
    """The account's balances are these (and available follows from them)."""
    got = (account.posted_balance, account.held_amount, account.available_amount)
    want = (posted, held, posted + account.credit_limit - held)
    assert got == want, (
        f"{what}: (posted, held, available) = {got}, want {want} "
        f"(credit_limit {account.credit_limit})"
    )


def assert_approved(auth: payments_pb2.Authorization, account_id: str, amount: int) -> None:
    """An approved authorization of `amount` whose hold is open."""
    assert AUTHORIZATION_ID.match(auth.id), (
        f"id {auth.id!r} is not 'auth_' + 32 lowercase hex digits of a UUIDv7"
    )
    got = (
        auth.account_id, auth.amount, payments_pb2.Decision.Name(auth.decision),
        auth.response_code, payments_pb2.AuthorizationStatus.Name(auth.status), auth.held_amount,
    )
    want = (account_id, amount, "DECISION_APPROVED", "00", "AUTHORIZATION_STATUS_HELD", amount)
    assert got == want, f"(account, amount, decision, code, status, held) = {got}, want {want}"
    assert auth.decline_reason == payments_pb2.DECLINE_REASON_UNSPECIFIED, (
        f"approved with decline reason {payments_pb2.DeclineReason.Name(auth.decline_reason)}"
    )
    assert auth.HasField("expires_at"), "an open hold has no expires_at"
    assert auth.expires_at.ToNanoseconds() > auth.created_at.ToNanoseconds(), (
        f"expires_at {auth.expires_at.ToJsonString()} is not after created_at "
        f"{auth.created_at.ToJsonString()}"
    )


def assert_declined(auth: payments_pb2.Authorization, account_id: str, amount: int, code: str) -> None:
    """A declined authorization with response code `code`: no hold, no expiry."""
    got = (
        auth.account_id, auth.amount, payments_pb2.Decision.Name(auth.decision),
        auth.response_code, payments_pb2.AuthorizationStatus.Name(auth.status), auth.held_amount,
    )
    want = (account_id, amount, "DECISION_DECLINED", code, "AUTHORIZATION_STATUS_DECLINED", 0)
    assert got == want, f"(account, amount, decision, code, status, held) = {got}, want {want}"
    assert not auth.HasField("expires_at"), f"a decline has expires_at {auth.expires_at.ToJsonString()}"


def event_key(event: payments_pb2.Event) -> tuple:
    """What an event says, without its sequence and time, for comparisons."""
    return (
        payments_pb2.EventType.Name(event.type), event.account_id, event.authorization_id,
        event.amount, event.currency, event.response_code,
    )


def expected_event(
    kind: int, account_id: str, authorization_id: str = "", amount: int = 0, response_code: str = ""
) -> tuple:
    """An event_key() as this run's own calls predict it."""
    return (
        payments_pb2.EventType.Name(kind), account_id, authorization_id, amount, CURRENCY, response_code,
    )


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
        self.skipped: list[str] = []

    def run(self, name: str, fn: Callable[[], None], requires: Iterable[str] = ()) -> bool:
        """Runs fn. `requires`: the methods and fields (full names) it calls
        and sets; absent from the baseline stubs, the check is skipped and
        counted; absent from the current stubs, it fails."""
        absent = absent_from_stubs(requires)
        if absent and BASELINE_PASS:
            self.skipped.append(name)
            print(f"skip {name}", flush=True)
            print(f"     not in the stubs in use ({STUBS}): {', '.join(absent)}")
            return False
        try:
            if absent:
                raise AssertionError(f"not in the current stubs ({STUBS}): {', '.join(absent)}")
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
        return f"{self.passed} passed, {len(self.failed)} failed, {len(self.skipped)} skipped"


# --------------------------------------------------------------------------
# The checks.


class InteropChecks:
    """The checks against one running server, sharing what they create."""

    def __init__(self, target: str, server: Server):
        self.target = target
        self.server = server
        self.client = UserClient(target)
        self.payments = PaymentClient(target)
        self.risk = RiskClient(target)
        self.channel = open_channel(target)
        self.ada: users_pb2.User | None = None
        # Every user this run created, in creation order; the database is new,
        # so these are exactly the users the server holds.
        self.created: list[users_pb2.User] = []
        self.all_ids: list[str] = []
        self.suspended_id: str | None = None

        # PaymentService. The account of the unary checks, and what they did.
        self.holder: users_pb2.User | None = None
        self.account: payments_pb2.Account | None = None
        self.credited: payments_pb2.CreditAccountResponse | None = None
        self.approved: payments_pb2.Authorization | None = None
        self.approved_args: dict = {}  # the Authorize arguments of `approved`
        self.declined: payments_pb2.Authorization | None = None
        self.risk_denied: payments_pb2.Authorization | None = None
        self.captured: payments_pb2.Authorization | None = None
        # The account of the stream checks, and the holds AuthorizeStream placed
        # on it (in request order), which BatchCapture then captures.
        self.stream_account: payments_pb2.Account | None = None
        self.stream_held: list[payments_pb2.Authorization] = []
        self.stream_auth_ids: set[str] = set()
        self.batch_captured: list[payments_pb2.Authorization] = []
        # The event log WatchEvents must replay, as groups in commit order: a
        # group is one call's events in order, or (unordered) the events of the
        # concurrent items of one stream, which commit in any order. The store
        # is new, so these are all its events, from sequence 1.
        self.event_groups: list[tuple[bool, list[tuple]]] = []
        # The account the UpdateAccountStatus checks closed.
        self.closed_account: payments_pb2.Account | None = None
        # RiskService: what GetRuleSet said of the rules loaded at start.
        self.rules_at_start: risk_pb2.GetRuleSetResponse | None = None

    def close(self) -> None:
        self.client.close()
        self.payments.close()
        self.risk.close()
        self.channel.close()

    def expect_events(self, *events: tuple, ordered: bool = True) -> None:
        """Records events this run caused, for the WatchEvents check."""
        self.event_groups.append((ordered, list(events)))

    def expected_event_count(self) -> int:
        return sum(len(events) for _, events in self.event_groups)

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
        fields = [v.field for v in field_violations(rich_status(e))]
        assert "name" in fields, f"BadRequest names fields {fields}, not 'name'"

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
        self.suspended_id = target
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

    # -- PaymentService: accounts ------------------------------------------

    def open_account(self) -> None:
        before = time.time()
        holder = self.client.create_user("Grace Hopper", "grace@example.com")
        self.created.append(holder)
        assert holder.status == ACTIVE, f"new user is {users_pb2.UserStatus.Name(holder.status)}"
        account = self.payments.open_account(holder.id, CURRENCY)
        assert ACCOUNT_ID.match(account.id), (
            f"id {account.id!r} is not 'acct_' + 32 lowercase hex digits of a UUIDv7"
        )
        assert account.owner_user_id == holder.id, f"owner_user_id {account.owner_user_id!r}"
        assert account.currency == CURRENCY, f"currency {account.currency!r}"
        assert account.status == ACCOUNT_ACTIVE, (
            f"status {payments_pb2.AccountStatus.Name(account.status)}"
        )
        assert account.credit_limit == 0, f"credit_limit {account.credit_limit}, asked for 0"
        assert_balances(account, posted=0, held=0, what="a new account")
        assert account.HasField("created_at"), "created_at not set"
        created = account.created_at.ToNanoseconds() / 1e9
        assert abs(created - before) < 300, (
            f"created_at {account.created_at.ToJsonString()} is far from now"
        )
        self.holder, self.account = holder, account
        self.expect_events(expected_event(payments_pb2.EVENT_TYPE_ACCOUNT_OPENED, account.id))

    def open_account_refused(self) -> None:
        suspended = need(self.suspended_id, "the user suspended by the UpdateUserStatus check")
        e = expect_rpc_error(
            grpc.StatusCode.FAILED_PRECONDITION, self.payments.open_account, suspended, CURRENCY
        )
        reason = error_reason(rich_status(e))
        assert reason == "OWNER_NOT_ACTIVE", f"ErrorInfo reason {reason!r}"
        expect_rpc_error(grpc.StatusCode.NOT_FOUND, self.payments.open_account, UNKNOWN_ID, CURRENCY)

    def credit_account(self) -> None:
        account = need(self.account, "the account from OpenAccount")
        key = new_idempotency_key()
        credited = self.payments.credit_account(account.id, 10_000, CURRENCY, key)
        assert credited.account.id == account.id, f"credited account {credited.account.id}"
        assert_balances(credited.account, posted=10_000, held=0, what="after crediting 10000")
        self.expect_events(
            expected_event(payments_pb2.EVENT_TYPE_CREDITED, account.id, amount=10_000)
        )
        # Sequences are gap-free from 1, and this run caused every event so far.
        want = self.expected_event_count()
        assert credited.event_sequence == want, (
            f"event_sequence {credited.event_sequence}, want {want} (OPENED, then this CREDITED)"
        )
        self.credited = credited
        # A retry with the same key answers the stored result and credits nothing.
        replay = self.payments.credit_account(account.id, 10_000, CURRENCY, key)
        assert replay == credited, f"a replay answered\n{replay}\nthe first call\n{credited}"

    def get_account(self) -> None:
        credited = need(self.credited, "the response of CreditAccount")
        account = self.payments.get_account(credited.account.id)
        assert account == credited.account, (
            f"GetAccount returned\n{account}\nbut CreditAccount answered\n{credited.account}"
        )
        assert_balances(account, posted=10_000, held=0, what="GetAccount after the credit")
        expect_rpc_error(
            grpc.StatusCode.NOT_FOUND,
            self.payments.get_account, "acct_0190f5a0c2b87cc3a1b2c3d4e5f60718",
        )

    # -- PaymentService: authorizations -------------------------------------

    def authorize_approved(self) -> None:
        account = need(self.credited, "the credited account").account
        args = dict(
            account_id=account.id, amount=2_500, currency=CURRENCY, merchant_id=MERCHANT,
            idempotency_key=new_idempotency_key(),
            description="interop: approved", metadata={"order": "A-1"},
        )
        auth = self.payments.authorize(**args)
        assert_approved(auth, account.id, 2_500)
        assert auth.available_after == 7_500, f"available_after {auth.available_after}, want 7500"
        assert auth.merchant_id == MERCHANT, f"merchant_id {auth.merchant_id!r}"
        assert auth.currency == CURRENCY, f"currency {auth.currency!r}"
        assert auth.captured_amount == 0, f"captured_amount {auth.captured_amount}"
        assert not auth.HasField("resolved_at"), "an open hold has resolved_at"
        assert auth.description == "interop: approved", f"description {auth.description!r}"
        assert dict(auth.metadata) == {"order": "A-1"}, f"metadata {dict(auth.metadata)}"
        # The hold lasts days (hold_ttl, 7 days by default), not seconds.
        ttl = (auth.expires_at.ToNanoseconds() - auth.created_at.ToNanoseconds()) / 1e9
        assert ttl > 3600, f"the hold expires {ttl:.0f} s after it was placed"
        assert_balances(
            self.payments.get_account(account.id), posted=10_000, held=2_500,
            what="GetAccount after the hold",
        )
        self.approved, self.approved_args = auth, args
        self.expect_events(
            expected_event(payments_pb2.EVENT_TYPE_AUTHORIZED, account.id, auth.id, 2_500, "00")
        )

    def authorize_declined(self) -> None:
        approved = need(self.approved, "the approved authorization")
        account_id = approved.account_id
        # A decline is an answer with status OK: the client raises on any other
        # status, which this check would report as an unexpected RPC error.
        auth = self.payments.authorize(account_id, 1_000_000, CURRENCY)
        assert_declined(auth, account_id, 1_000_000, "51")
        assert auth.decline_reason == payments_pb2.DECLINE_REASON_INSUFFICIENT_FUNDS, (
            f"decline_reason {payments_pb2.DeclineReason.Name(auth.decline_reason)}"
        )
        assert auth.available_after == 7_500, f"available_after {auth.available_after}, want 7500"
        assert_balances(
            self.payments.get_account(account_id), posted=10_000, held=2_500,
            what="GetAccount after the decline",
        )
        self.declined = auth
        self.expect_events(
            expected_event(payments_pb2.EVENT_TYPE_DECLINED, account_id, auth.id, 1_000_000, "51")
        )

    def authorize_risk_denied(self) -> None:
        approved = need(self.approved, "the approved authorization")
        account_id = approved.account_id
        auth = self.payments.authorize(account_id, 100, CURRENCY, merchant_id=DENIED_MERCHANT)
        assert_declined(auth, account_id, 100, "59")
        got = (
            payments_pb2.DeclineReason.Name(auth.decline_reason),
            payments_pb2.Decider.Name(auth.decided_by),
        )
        assert got == ("DECLINE_REASON_SUSPECTED_FRAUD", "DECIDER_RISK"), f"(reason, decided_by) = {got}"
        assert approved.decided_by == payments_pb2.DECIDER_RISK, "the approval was decided by risk too"
        self.risk_denied = auth
        self.expect_events(
            expected_event(payments_pb2.EVENT_TYPE_DECLINED, account_id, auth.id, 100, "59")
        )

    def authorize_replay(self) -> None:
        approved = need(self.approved, "the approved authorization")
        again = self.payments.authorize(**self.approved_args)
        assert again.id == approved.id, f"a replay answered {again.id}, first {approved.id}"
        assert again == approved, f"a replay answered\n{again}\nthe first call\n{approved}"
        assert_balances(
            self.payments.get_account(approved.account_id), posted=10_000, held=2_500,
            what="GetAccount after the replay (no second hold)",
        )

    def authorize_key_reused(self) -> None:
        approved = need(self.approved, "the approved authorization")
        other = dict(self.approved_args, amount=2_600)
        e = expect_rpc_error(
            grpc.StatusCode.ALREADY_EXISTS, functools.partial(self.payments.authorize, **other)
        )
        reason = error_reason(rich_status(e))
        assert reason == "IDEMPOTENCY_KEY_REUSED", f"ErrorInfo reason {reason!r}"
        assert_balances(
            self.payments.get_account(approved.account_id), posted=10_000, held=2_500,
            what="GetAccount after the refused request",
        )

    def authorize_malformed(self) -> None:
        account = need(self.account, "the account from OpenAccount")
        e = expect_rpc_error(
            grpc.StatusCode.INVALID_ARGUMENT, self.payments.authorize, account.id, 0, "usd"
        )
        fields = sorted(v.field for v in field_violations(rich_status(e)))
        assert fields == ["amount", "currency"], (
            f"BadRequest names fields {fields}, want ['amount', 'currency']"
        )

    def capture_partial(self) -> None:
        need(self.approved, "the approved authorization")
        account_id = self.approved.account_id
        held = self.payments.authorize(account_id, 3_000, CURRENCY)
        assert_approved(held, account_id, 3_000)
        self.expect_events(
            expected_event(payments_pb2.EVENT_TYPE_AUTHORIZED, account_id, held.id, 3_000, "00")
        )
        captured = self.payments.capture(held.id, 1_000)
        self.expect_events(
            expected_event(payments_pb2.EVENT_TYPE_CAPTURED, account_id, held.id, 1_000)
        )
        assert captured.id == held.id, f"Capture answered authorization {captured.id}"
        assert captured.status == CAPTURED, (
            f"status {payments_pb2.AuthorizationStatus.Name(captured.status)}"
        )
        assert captured.captured_amount == 1_000, f"captured_amount {captured.captured_amount}"
        assert captured.held_amount == 3_000, (
            f"held_amount {captured.held_amount}, want the 3000 placed"
        )
        assert captured.HasField("resolved_at"), "a captured authorization has no resolved_at"
        got = self.payments.get_authorization(held.id)
        assert got == captured, f"GetAuthorization returned\n{got}\nCapture answered\n{captured}"
        # 1000 posted; the other 2000 of the hold released; the first hold stays.
        assert_balances(
            self.payments.get_account(account_id), posted=9_000, held=2_500,
            what="GetAccount after capturing 1000 of 3000",
        )
        self.captured = captured

    def void_after_capture(self) -> None:
        captured = need(self.captured, "the authorization captured by the Capture check")
        e = expect_rpc_error(grpc.StatusCode.FAILED_PRECONDITION, self.payments.void, captured.id)
        reason = error_reason(rich_status(e))
        assert reason == "ALREADY_CAPTURED", f"ErrorInfo reason {reason!r}"
        got = self.payments.get_authorization(captured.id)
        assert got == captured, f"after the refused Void:\n{got}\nwant it unchanged:\n{captured}"
        assert_balances(
            self.payments.get_account(captured.account_id), posted=9_000, held=2_500,
            what="GetAccount after the refused Void",
        )

    def update_account_status(self) -> None:
        holder = need(self.holder, "the account holder from the OpenAccount check")
        account = self.payments.open_account(holder.id, CURRENCY)
        self.expect_events(expected_event(payments_pb2.EVENT_TYPE_ACCOUNT_OPENED, account.id))

        frozen = self.payments.update_account_status(account.id, ACCOUNT_FROZEN)
        self.expect_events(expected_event(payments_pb2.EVENT_TYPE_ACCOUNT_STATUS_CHANGED, account.id))
        assert (frozen.id, frozen.status) == (account.id, ACCOUNT_FROZEN), (
            f"answered {frozen.id} {payments_pb2.AccountStatus.Name(frozen.status)}, want {account.id} FROZEN"
        )
        assert frozen.updated_at.ToNanoseconds() >= account.created_at.ToNanoseconds(), (
            f"updated_at {frozen.updated_at.ToJsonString()} is before created_at"
        )
        assert_balances(frozen, posted=0, held=0, what="the frozen account")
        # The same status again changes nothing: no event, the same account.
        again = self.payments.update_account_status(account.id, ACCOUNT_FROZEN)
        assert again == frozen, f"FROZEN twice answered\n{again}\nthe first time\n{frozen}"
        got = self.payments.get_account(account.id)
        assert got == frozen, f"GetAccount returned\n{got}\nUpdateAccountStatus answered\n{frozen}"

        # A frozen account declines with 57: an answer, not an error.
        declined = self.payments.authorize(account.id, 100, CURRENCY)
        assert_declined(declined, account.id, 100, "57")
        assert declined.decline_reason == payments_pb2.DECLINE_REASON_ACCOUNT_NOT_ACTIVE, (
            f"decline_reason {payments_pb2.DeclineReason.Name(declined.decline_reason)}"
        )
        self.expect_events(
            expected_event(payments_pb2.EVENT_TYPE_DECLINED, account.id, declined.id, 100, "57")
        )

        for status in (ACCOUNT_ACTIVE, ACCOUNT_CLOSED):
            changed = self.payments.update_account_status(account.id, status)
            self.expect_events(expected_event(payments_pb2.EVENT_TYPE_ACCOUNT_STATUS_CHANGED, account.id))
            assert changed.status == status, (
                f"answered {payments_pb2.AccountStatus.Name(changed.status)}, "
                f"want {payments_pb2.AccountStatus.Name(status)}"
            )
        self.closed_account = changed

    def update_account_status_refused(self) -> None:
        closed = need(self.closed_account, "the account closed by the UpdateAccountStatus check")
        e = expect_rpc_error(
            grpc.StatusCode.FAILED_PRECONDITION,
            self.payments.update_account_status, closed.id, ACCOUNT_ACTIVE,
        )
        reason = error_reason(rich_status(e))
        assert reason == "ACCOUNT_CLOSED", f"ErrorInfo reason {reason!r}"
        got = self.payments.get_account(closed.id)
        assert got == closed, f"after the refused reopening:\n{got}\nwant it unchanged:\n{closed}"

        e = expect_rpc_error(
            grpc.StatusCode.INVALID_ARGUMENT,
            self.payments.update_account_status, "acct_123", payments_pb2.ACCOUNT_STATUS_UNSPECIFIED,
        )
        fields = sorted(v.field for v in field_violations(rich_status(e)))
        assert fields == ["account_id", "status"], (
            f"BadRequest names fields {fields}, want ['account_id', 'status']"
        )
        expect_rpc_error(
            grpc.StatusCode.NOT_FOUND,
            self.payments.update_account_status, UNKNOWN_ACCOUNT_ID, ACCOUNT_FROZEN,
        )

    # -- PaymentService: streams --------------------------------------------

    def authorize_stream(self) -> None:
        holder = need(self.holder, "the account holder from the OpenAccount check")
        account = self.payments.open_account(holder.id, CURRENCY)
        self.expect_events(expected_event(payments_pb2.EVENT_TYPE_ACCOUNT_OPENED, account.id))
        funds = 1_000_000
        self.payments.credit_account(account.id, funds, CURRENCY)
        self.expect_events(expected_event(payments_pb2.EVENT_TYPE_CREDITED, account.id, amount=funds))
        self.stream_account = account

        sent: dict[str, payments_pb2.AuthorizeRequest] = {}

        def requests():
            for i in range(STREAM_REQUESTS):
                if i == STREAM_MALFORMED:
                    amount = 0
                elif i == STREAM_DECLINED:
                    amount = 2 * funds
                else:
                    amount = 1_000 + i
                request = payments_pb2.AuthorizeRequest(
                    idempotency_key=new_idempotency_key(), account_id=account.id,
                    merchant_id=MERCHANT, amount=amount, currency=CURRENCY,
                )
                correlation_id = f"corr-{i:02d}"
                sent[correlation_id] = request
                yield payments_pb2.AuthorizeStreamRequest(
                    correlation_id=correlation_id, request=request
                )

        responses = self.payments.authorize_stream(requests())
        answers = list(responses)  # raises if the stream ends with an error status
        assert responses.code() == grpc.StatusCode.OK, f"the stream ended {responses.code()}"

        counts = collections.Counter(a.correlation_id for a in answers)
        dupes = sorted(c for c, n in counts.items() if n > 1)
        unknown = sorted(c for c in counts if c not in sent)
        missing = sorted(c for c in sent if c not in counts)
        assert len(sent) == STREAM_REQUESTS, f"the generator sent {len(sent)} requests"
        assert not (dupes or unknown or missing), (
            f"{len(answers)} answers to {len(sent)} requests: answered more than once "
            f"{dupes[:5]}, unknown correlation ids {unknown[:5]}, unanswered {missing[:5]}"
        )

        by_id = {a.correlation_id: a for a in answers}
        approved, events = [], []
        for i in range(STREAM_REQUESTS):
            correlation_id = f"corr-{i:02d}"
            answer, request = by_id[correlation_id], sent[correlation_id]
            kind = answer.WhichOneof("result")
            if i == STREAM_MALFORMED:
                assert kind == "error", f"{correlation_id} (amount 0) answered {kind}: {answer}"
                assert code_name(answer.error.code) == "INVALID_ARGUMENT", (
                    f"{correlation_id}: error code {code_name(answer.error.code)}, want INVALID_ARGUMENT"
                )
                fields = [v.field for v in field_violations(answer.error)]
                assert fields == ["request.amount"], f"{correlation_id}: BadRequest fields {fields}"
                continue
            assert kind == "authorization", (
                f"{correlation_id} answered {kind}: {answer.error if kind == 'error' else answer}"
            )
            auth = answer.authorization
            try:
                if i == STREAM_DECLINED:
                    assert_declined(auth, account.id, request.amount, "51")
                    events.append(expected_event(
                        payments_pb2.EVENT_TYPE_DECLINED, account.id, auth.id, request.amount, "51"
                    ))
                else:
                    assert_approved(auth, account.id, request.amount)
                    approved.append(auth)
                    events.append(expected_event(
                        payments_pb2.EVENT_TYPE_AUTHORIZED, account.id, auth.id, request.amount, "00"
                    ))
            except AssertionError as e:
                raise AssertionError(f"{correlation_id}: {e}") from None
        self.expect_events(*events, ordered=False)

        auth_ids = [a.authorization.id for a in answers if a.WhichOneof("result") == "authorization"]
        assert len(set(auth_ids)) == len(auth_ids), "two requests answered the same authorization"
        held = sum(a.amount for a in approved)
        assert_balances(
            self.payments.get_account(account.id), posted=funds, held=held,
            what=f"GetAccount after {len(approved)} holds on the stream",
        )
        self.stream_held = approved
        self.stream_auth_ids = set(auth_ids)

    def batch_capture(self) -> None:
        holds = need(self.stream_held, "the holds placed by the AuthorizeStream check")[:BATCH_GOOD]
        captured_before = need(self.captured, "the authorization captured by the Capture check")
        account = self.stream_account
        assert len(holds) == BATCH_GOOD, f"only {len(holds)} holds to capture"
        # Whole holds (amount 0) but for one partial; the failures mid-batch.
        amounts = [0, 500, 0, 0, 0]
        items: list[tuple[str, int]] = [(h.id, a) for h, a in zip(holds, amounts)]
        items.insert(2, (UNKNOWN_AUTHORIZATION_ID, 0))
        items.insert(5, (captured_before.id, 0))
        captures = [
            payments_pb2.CaptureRequest(
                authorization_id=auth_id, amount=amount, idempotency_key=new_idempotency_key()
            )
            for auth_id, amount in items
        ]
        before = self.payments.get_account(account.id)

        summary = self.payments.batch_capture(iter(captures))

        want_amounts = [a or h.amount for h, a in zip(holds, amounts)]
        got = (summary.captured, summary.failed, summary.captured_amount, summary.failures_truncated)
        want = (BATCH_GOOD, 2, sum(want_amounts), False)
        assert got == want, f"(captured, failed, captured_amount, truncated) = {got}, want {want}"
        failures = [(f.index, f.authorization_id, code_name(f.error.code)) for f in summary.failures]
        want_failures = [
            (2, UNKNOWN_AUTHORIZATION_ID, "NOT_FOUND"),
            (5, captured_before.id, "FAILED_PRECONDITION"),
        ]
        assert failures == want_failures, (
            f"failures (index, authorization_id, code) {failures}, want {want_failures}"
        )
        reason = error_reason(summary.failures[1].error)
        assert reason == "ALREADY_CAPTURED", f"failure #5: ErrorInfo reason {reason!r}"
        assert summary.failures[0].error.message, "failure #2 has no message"

        captured = []
        for hold, amount in zip(holds, want_amounts):
            auth = self.payments.get_authorization(hold.id)
            assert (auth.status, auth.captured_amount) == (CAPTURED, amount), (
                f"{hold.id} after the batch: {payments_pb2.AuthorizationStatus.Name(auth.status)}, "
                f"captured {auth.captured_amount}, want CAPTURED {amount}"
            )
            captured.append(auth)
        assert_balances(
            self.payments.get_account(account.id),
            posted=before.posted_balance - sum(want_amounts),
            held=before.held_amount - sum(h.amount for h in holds),
            what="GetAccount after the batch",
        )
        self.batch_captured = captured
        self.expect_events(
            *(
                expected_event(payments_pb2.EVENT_TYPE_CAPTURED, account.id, h.id, amount)
                for h, amount in zip(holds, want_amounts)
            ),
            ordered=False,
        )

    def list_authorizations(self) -> None:
        unary = [
            need(self.approved, "the approved authorization"),
            need(self.declined, "the declined authorization"),
            need(self.risk_denied, "the authorization risk denied"),
            need(self.captured, "the authorization captured by the Capture check"),
        ]
        need(self.stream_auth_ids, "the authorizations of the AuthorizeStream check")
        # The unary checks' account: exactly its four, in creation order, as
        # they stand now; none of the other account's.
        first = self.approved.account_id
        listed = [r.authorization for r in self.payments.list_authorizations(account_id=first)]
        got = [a.id for a in listed]
        want = [a.id for a in unary]
        assert got == want, f"account filter: {describe_difference(got, want)}"
        statuses = [payments_pb2.AuthorizationStatus.Name(a.status) for a in listed]
        want_statuses = [
            "AUTHORIZATION_STATUS_HELD", "AUTHORIZATION_STATUS_DECLINED",
            "AUTHORIZATION_STATUS_DECLINED", "AUTHORIZATION_STATUS_CAPTURED",
        ]
        assert statuses == want_statuses, f"statuses {statuses}, want {want_statuses}"
        assert listed[3] == self.captured, f"listed\n{listed[3]}\nbut Capture answered\n{self.captured}"
        # The stream's account: every answer of the stream (approved or
        # declined), each once, in creation order (ids sort by creation time).
        second = self.stream_account.id
        listed = [r.authorization for r in self.payments.list_authorizations(account_id=second)]
        got = [a.id for a in listed]
        want = sorted(self.stream_auth_ids)
        assert got == want, f"account filter: {describe_difference(got, want)}"
        times = [a.created_at.ToNanoseconds() for a in listed]
        assert times == sorted(times), "created_at goes back in time along the listing"

    def watch_events(self) -> None:
        need(self.batch_captured, "the checks that caused the events, up to BatchCapture")
        want_count = self.expected_event_count()
        stream = self.payments.watch_events(from_sequence=1, timeout=RPC_TIMEOUT)
        events: list[payments_pb2.Event] = []
        try:
            for response in stream:
                events.append(response.event)
                if response.event.sequence >= want_count:
                    break
        except grpc.RpcError as e:
            raise AssertionError(
                f"the stream failed with {e.code().name} ({e.details()!r}) after "
                f"{len(events)} of {want_count} events"
            ) from None
        finally:
            stream.cancel()  # it would follow new commits until the deadline
        sequences = [e.sequence for e in events]
        assert sequences == list(range(1, want_count + 1)), (
            f"sequences {sequences[:3]}...{sequences[-3:]} ({len(sequences)}), want 1..{want_count}"
        )
        assert all(e.HasField("occurred_at") for e in events), "an event has no occurred_at"
        at = 0
        for ordered, group in self.event_groups:
            got = [event_key(e) for e in events[at:at + len(group)]]
            want = group if ordered else sorted(group)
            if not ordered:
                got = sorted(got)
            assert got == want, (
                f"events {at + 1}..{at + len(group)}:\n  got  {got[:3]}\n  want {want[:3]}"
            )
            at += len(group)
        credited = self.credited
        assert event_key(events[credited.event_sequence - 1])[0] == "EVENT_TYPE_CREDITED", (
            f"event {credited.event_sequence}, named by CreditAccount, is not its CREDITED"
        )

    def watch_events_live(self) -> None:
        account = need(self.account, "the account from OpenAccount")
        last = need(self.expected_event_count(), "the events of the earlier checks")
        stream = self.payments.watch_events(from_sequence=last + 1, timeout=RPC_TIMEOUT)
        try:
            credited = self.payments.credit_account(account.id, 1, CURRENCY)
            self.expect_events(expected_event(payments_pb2.EVENT_TYPE_CREDITED, account.id, amount=1))
            event = next(stream).event
        finally:
            stream.cancel()
        assert credited.event_sequence == last + 1, (
            f"CreditAccount's event_sequence {credited.event_sequence}, want {last + 1}"
        )
        assert event.sequence == last + 1, f"the watcher got sequence {event.sequence}, want {last + 1}"
        got, want = event_key(event), self.event_groups[-1][1][0]
        assert got == want, f"the watcher got {got}, want {want}"

    # -- RiskService --------------------------------------------------------
    # Score is asked directly here, with account ids of its own (risk only
    # remembers them). The rollout checks switch the rollout; ReloadRules
    # puts the file's back. PaymentService's Authorize checks ran before.

    def risk_score(self) -> None:
        allowed = self.risk.score("acct_interop-risk", MERCHANT, 2_500, CURRENCY, available_amount=10_000)
        got = score_key(allowed)
        want = (RULES_ACTIVE, 0, "RISK_DECISION_ALLOW", False, None)
        assert got == want, f"(set, score, decision, by candidate, shadow) = {got}, want {want}"
        assert not allowed.reasons, f"no rule should fire: {list(allowed.reasons)}"

        denied = self.risk.score("acct_interop-risk", DENIED_MERCHANT, 100, CURRENCY)
        got = score_key(denied)
        want = (RULES_ACTIVE, 1000, "RISK_DECISION_DENY", False, None)
        assert got == want, f"(set, score, decision, by candidate, shadow) = {got}, want {want}"
        reasons = [(r.rule_id, r.score, r.deny) for r in denied.reasons]
        assert reasons == [("merchant.denied", 0, True)], f"reasons (rule, score, deny) {reasons}"
        assert denied.reasons[0].description, "the deny reason has no description"

    def risk_score_malformed(self) -> None:
        e = expect_rpc_error(
            grpc.StatusCode.INVALID_ARGUMENT,
            self.risk.score, "", MERCHANT, 0, "usd", -1,
        )
        fields = sorted(v.field for v in field_violations(rich_status(e)))
        want = ["account_id", "amount", "available_amount", "currency"]
        assert fields == want, f"BadRequest names fields {fields}, want {want}"

    def risk_score_batch(self) -> None:
        allowed = risk_pb2.ScoreRequest(
            account_id="acct_interop-batch", merchant_id=MERCHANT, amount=2_500, currency=CURRENCY
        )
        malformed = risk_pb2.ScoreRequest(account_id="", merchant_id=MERCHANT, amount=0, currency="usd")
        denied = risk_pb2.ScoreRequest(
            account_id="acct_interop-batch", merchant_id=DENIED_MERCHANT, amount=100, currency=CURRENCY
        )
        results = self.risk.score_batch([allowed, malformed, denied]).results
        kinds = [r.WhichOneof("result") for r in results]
        assert kinds == ["response", "error", "response"], f"results {kinds}, want response, error, response"
        got = [score_key(results[0].response), score_key(results[2].response)]
        want = [
            (RULES_ACTIVE, 0, "RISK_DECISION_ALLOW", False, None),
            (RULES_ACTIVE, 1000, "RISK_DECISION_DENY", False, None),
        ]
        assert got == want, f"(set, score, decision, by candidate, shadow) = {got}, want {want}"
        error = results[1].error
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0], f"the malformed item's code is {error.code}"
        fields = sorted(v.field for v in field_violations(error))
        assert fields == ["account_id", "amount", "currency"], f"BadRequest names fields {fields}"
        e = expect_rpc_error(grpc.StatusCode.INVALID_ARGUMENT, self.risk.score_batch, [])
        fields = [v.field for v in field_violations(rich_status(e))]
        assert fields == ["requests"], f"an empty batch: BadRequest names {fields}, want requests"

    def risk_get_rule_set(self) -> None:
        got = self.risk.get_rule_set()
        active = got.rule_set
        summary = (active.version, active.review_at, active.deny_at)
        assert summary == (RULES_ACTIVE, 500, 800), f"(version, review_at, deny_at) = {summary}"
        rules = [
            (r.id, r.deny, r.WhichOneof("condition"), list(r.merchant_deny_list.merchant_ids))
            for r in active.rules
        ]
        want = [("merchant.denied", True, "merchant_deny_list", [DENIED_MERCHANT])]
        assert rules == want, f"rules (id, deny, condition, merchants) {rules}, want {want}"
        rollout = rollout_key(got.rollout)
        assert rollout == (RULES_ACTIVE, "", "ROLLOUT_MODE_UNSPECIFIED", 0), f"rollout {rollout}"
        assert got.rollout.HasField("since"), "the rollout has no since"
        assert list(got.versions) == [RULES_ACTIVE, RULES_CANDIDATE], f"versions {list(got.versions)}"
        assert got.rules_file == str(self.server.rules_file), f"rules_file {got.rules_file!r}"
        assert got.HasField("loaded_at"), "no loaded_at"
        assert got.last_reload_error == "", f"last_reload_error {got.last_reload_error!r}"

        candidate = self.risk.get_rule_set(RULES_CANDIDATE).rule_set
        rules = sorted((r.id, r.score, r.WhichOneof("condition")) for r in candidate.rules)
        want = sorted([
            ("merchant.denied", 0, "merchant_deny_list"), ("amount.review", REVIEW_SCORE, "amount_above"),
        ])
        assert (candidate.version, rules) == (RULES_CANDIDATE, want), (
            f"GetRuleSet({RULES_CANDIDATE!r}): version {candidate.version!r}, rules {rules}, want {want}"
        )
        review = next(r for r in candidate.rules if r.id == "amount.review")
        assert review.amount_above.amount == REVIEW_ABOVE, f"amount_above {review.amount_above}"
        self.rules_at_start = got

    def risk_get_rule_set_refused(self) -> None:
        expect_rpc_error(grpc.StatusCode.NOT_FOUND, self.risk.get_rule_set, "interop-9")
        e = expect_rpc_error(grpc.StatusCode.INVALID_ARGUMENT, self.risk.get_rule_set, "no spaces")
        fields = [v.field for v in field_violations(rich_status(e))]
        assert fields == ["version"], f"BadRequest names fields {fields}, want ['version']"

    def risk_set_rollout(self) -> None:
        need(self.rules_at_start, "the rules seen by the GetRuleSet check")
        account = "acct_interop-rollout"
        shadow = self.risk.set_rollout(RULES_CANDIDATE, risk_pb2.ROLLOUT_MODE_SHADOW)
        got = (rollout_key(shadow.rollout), rollout_key(shadow.previous))
        want = (
            (RULES_ACTIVE, RULES_CANDIDATE, "ROLLOUT_MODE_SHADOW", 0),
            (RULES_ACTIVE, "", "ROLLOUT_MODE_UNSPECIFIED", 0),
        )
        assert got == want, f"SHADOW: (rollout, previous) = {got}, want {want}"
        in_force = rollout_key(self.risk.get_rule_set().rollout)
        assert in_force == want[0], f"GetRuleSet's rollout {in_force}, want {want[0]}"
        # In shadow the candidate is scored, never enforced.
        scored = score_key(self.risk.score(account, MERCHANT, 2 * REVIEW_ABOVE, CURRENCY))
        want_score = (RULES_ACTIVE, 0, "RISK_DECISION_ALLOW", False,
                      (RULES_CANDIDATE, REVIEW_SCORE, "RISK_DECISION_REVIEW"))
        assert scored == want_score, f"Score in SHADOW: {scored}, want {want_score}"

        # PERCENTAGE 100: every account's share, so the candidate decides.
        everyone = self.risk.set_rollout(RULES_CANDIDATE, risk_pb2.ROLLOUT_MODE_PERCENTAGE, 100)
        got = (rollout_key(everyone.rollout), rollout_key(everyone.previous))
        want = ((RULES_ACTIVE, RULES_CANDIDATE, "ROLLOUT_MODE_PERCENTAGE", 100), want[0])
        assert got == want, f"PERCENTAGE 100: (rollout, previous) = {got}, want {want}"
        answer = self.risk.score(account, MERCHANT, 2 * REVIEW_ABOVE, CURRENCY)
        want_score = (RULES_CANDIDATE, REVIEW_SCORE, "RISK_DECISION_REVIEW", True,
                      (RULES_ACTIVE, 0, "RISK_DECISION_ALLOW"))
        assert score_key(answer) == want_score, f"Score in PERCENTAGE 100: {score_key(answer)}, want {want_score}"
        reasons = [r.rule_id for r in answer.reasons]
        assert reasons == ["amount.review"], f"reasons {reasons}"

    def risk_set_rollout_refused(self) -> None:
        before = rollout_key(self.risk.get_rule_set().rollout)
        e = expect_rpc_error(
            grpc.StatusCode.FAILED_PRECONDITION,
            self.risk.set_rollout, RULES_ACTIVE, risk_pb2.ROLLOUT_MODE_SHADOW,
        )
        reason = error_reason(rich_status(e), RISK_DOMAIN)
        assert reason == "CANDIDATE_IS_ACTIVE", f"ErrorInfo reason {reason!r}"
        expect_rpc_error(
            grpc.StatusCode.NOT_FOUND, self.risk.set_rollout, "interop-9", risk_pb2.ROLLOUT_MODE_ENFORCE
        )
        e = expect_rpc_error(
            grpc.StatusCode.INVALID_ARGUMENT, self.risk.set_rollout, "", risk_pb2.ROLLOUT_MODE_SHADOW, 5
        )
        fields = sorted(v.field for v in field_violations(rich_status(e)))
        assert fields == ["percent", "version"], f"BadRequest names fields {fields}, want ['percent', 'version']"
        after = rollout_key(self.risk.get_rule_set().rollout)
        assert after == before, f"the refused switches changed the rollout: {before} -> {after}"

    def risk_get_rollout_stats(self) -> None:
        need(self.rules_at_start, "the rules seen by the GetRuleSet check")
        account = "acct_interop-stats"
        # A switch starts a rollout with fresh counters; nothing else scores meanwhile.
        shadow = self.risk.set_rollout(RULES_CANDIDATE, risk_pb2.ROLLOUT_MODE_SHADOW)
        self.risk.score(account, MERCHANT, 100, CURRENCY)  # both ALLOW
        self.risk.score(account, MERCHANT, 2 * REVIEW_ABOVE, CURRENCY)  # shadow REVIEW: stricter
        self.risk.score(account, DENIED_MERCHANT, 100, CURRENCY)  # both DENY
        stats = self.risk.get_rollout_stats()
        assert rollout_key(stats.rollout) == rollout_key(shadow.rollout), (
            f"stats of rollout {rollout_key(stats.rollout)}, want {rollout_key(shadow.rollout)}"
        )
        assert stats.rollout.since == shadow.rollout.since, "stats count from another start"
        counts = lambda s: (  # noqa: E731
            s.evaluations, s.decided_by_candidate, s.shadow_evaluations,
            s.disagreements, s.shadow_stricter, s.shadow_more_lenient,
        )
        assert counts(stats) == (3, 0, 3, 1, 1, 0), (
            f"SHADOW (evaluations, by candidate, shadow, disagreements, stricter, more lenient) = "
            f"{counts(stats)}, want (3, 0, 3, 1, 1, 0)"
        )
        # The candidate deciding, the active set in shadow: more lenient.
        self.risk.set_rollout(RULES_CANDIDATE, risk_pb2.ROLLOUT_MODE_PERCENTAGE, 100)
        self.risk.score(account, MERCHANT, 2 * REVIEW_ABOVE, CURRENCY)
        stats = self.risk.get_rollout_stats()
        assert counts(stats) == (1, 1, 1, 1, 0, 1), (
            f"PERCENTAGE 100 (evaluations, by candidate, shadow, disagreements, stricter, more lenient) = "
            f"{counts(stats)}, want (1, 1, 1, 1, 0, 1)"
        )

    def risk_admin_needs_scope(self) -> None:
        scorer = RiskClient(self.target, token=self.server.token_with("risk:score"))
        try:
            answer = scorer.score("acct_interop-scorer", MERCHANT, 100, CURRENCY)
            assert answer.decision == risk_pb2.RISK_DECISION_ALLOW, (
                f"risk:score token: Score decided {risk_pb2.RiskDecision.Name(answer.decision)}"
            )
            e = expect_rpc_error(grpc.StatusCode.PERMISSION_DENIED, scorer.get_rollout_stats)
            assert "risk:admin" in (e.details() or ""), f"the refusal names no scope: {e.details()!r}"
        finally:
            scorer.close()

    def risk_reload_rules(self) -> None:
        start = need(self.rules_at_start, "the rules seen by the GetRuleSet check")
        switched = rollout_key(self.risk.get_rule_set().rollout)
        assert switched != rollout_key(start.rollout), "the rollout checks left the file's rollout in force"
        reloaded = self.risk.reload_rules()
        got = (rollout_key(reloaded.rollout), list(reloaded.versions))
        want = ((RULES_ACTIVE, "", "ROLLOUT_MODE_UNSPECIFIED", 0), [RULES_ACTIVE, RULES_CANDIDATE])
        assert got == want, f"(rollout, versions) = {got}, want the file's {want}"
        assert reloaded.loaded_at.ToNanoseconds() > start.loaded_at.ToNanoseconds(), (
            f"loaded_at {reloaded.loaded_at.ToJsonString()} is not after the start's "
            f"{start.loaded_at.ToJsonString()}"
        )
        in_force = self.risk.get_rule_set()
        assert rollout_key(in_force.rollout) == want[0], f"GetRuleSet's rollout {rollout_key(in_force.rollout)}"
        assert in_force.last_reload_error == "", f"last_reload_error {in_force.last_reload_error!r}"

    def risk_reload_rules_invalid(self) -> None:
        need(self.rules_at_start, "the rules seen by the GetRuleSet check")
        rules_file = self.server.rules_file
        write_atomically(rules_file, risk_rules(active="interop-missing"))
        try:
            e = expect_rpc_error(grpc.StatusCode.FAILED_PRECONDITION, self.risk.reload_rules)
            info = error_info(rich_status(e), RISK_DOMAIN)
            got = (info.reason, dict(info.metadata))
            want = ("RULES_INVALID", {"rules_file": str(rules_file)})
            assert got == want, f"ErrorInfo (reason, metadata) {got}, want {want}"
            assert "interop-missing" in (e.details() or ""), f"the message names no problem: {e.details()!r}"
            # The rules in force stay, and say why the last load failed.
            in_force = self.risk.get_rule_set()
            got = (in_force.rule_set.version, rollout_key(in_force.rollout)[0], list(in_force.versions))
            want = (RULES_ACTIVE, RULES_ACTIVE, [RULES_ACTIVE, RULES_CANDIDATE])
            assert got == want, f"after the failed reload (set, active, versions) = {got}, want {want}"
            assert "interop-missing" in in_force.last_reload_error, (
                f"last_reload_error {in_force.last_reload_error!r}"
            )
        finally:
            write_atomically(rules_file, risk_rules())
        self.risk.reload_rules()
        error = self.risk.get_rule_set().last_reload_error
        assert error == "", f"a good reload left last_reload_error {error!r}"

    # -- coverage -----------------------------------------------------------

    def every_rpc_called(self) -> None:
        pool = descriptor_pool.Default()
        missing = []
        for name in CONTRACT_SERVICES:
            try:
                service = pool.FindServiceByName(name)
            except KeyError:
                # A service newer than the release contract: its checks were skipped.
                assert BASELINE_PASS, f"{name} is not in the current stubs ({STUBS})"
                continue
            missing += [m.full_name for m in service.methods if m.full_name not in CALLS.methods]
        assert not missing, f"no check called {missing}"

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

    # -- authentication ----------------------------------------------------

    def _list_users_with(self, token: str) -> None:
        with open_channel(self.target, token=token) as channel:
            stub = users_pb2_grpc.UserServiceStub(channel)
            for _ in stub.ListUsers(users_pb2.ListUsersRequest(), timeout=RPC_TIMEOUT):
                pass

    def no_token_unauthenticated(self) -> None:
        error = expect_rpc_error(grpc.StatusCode.UNAUTHENTICATED, self._list_users_with, "")
        assert "missing bearer token" in (error.details() or ""), error.details()

    def forged_token_unauthenticated(self) -> None:
        # The dev token's header and claims with the signature of another secret.
        header, claims, _ = TLS["token"].split(".")
        forged = f"{header}.{claims}.{'A' * 43}"
        error = expect_rpc_error(grpc.StatusCode.UNAUTHENTICATED, self._list_users_with, forged)
        assert forged not in (error.details() or ""), "the token was echoed"

    def health_open_without_token(self) -> None:
        with open_channel(self.target, token="") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            response = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=RPC_TIMEOUT)
            assert response.status == health_pb2.HealthCheckResponse.SERVING, response.status

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

    def reflection_v1alpha_payments(self) -> None:
        pool = DescriptorPool(self._reflection_db(self.channel))
        service = pool.FindServiceByName(PAYMENTS_SERVICE)
        assert service.file.name == PAYMENTS_PROTO, f"service defined in {service.file.name}"
        methods = set(service.methods_by_name)
        assert methods == PAYMENT_METHODS, f"methods {sorted(methods)}"
        streaming = {}
        for name in ("ListAuthorizations", "AuthorizeStream", "BatchCapture", "WatchEvents"):
            method = descriptor_pb2.MethodDescriptorProto()
            service.methods_by_name[name].CopyToProto(method)
            streaming[name] = (method.client_streaming, method.server_streaming)
        want = {
            "ListAuthorizations": (False, True), "AuthorizeStream": (True, True),
            "BatchCapture": (True, False), "WatchEvents": (False, True),
        }
        assert streaming == want, f"(client, server) streaming {streaming}, want {want}"
        # The import of google/rpc/status.proto resolves from the server too.
        answer = pool.FindMessageTypeByName("courier.payments.v1.AuthorizeStreamResponse")
        error = answer.fields_by_name["error"].message_type
        assert error.full_name == "google.rpc.Status", f"error is a {error.full_name}"
        assert error.file.name == "google/rpc/status.proto", f"google.rpc.Status in {error.file.name}"

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
                TLS["token"] = server.token_path.read_text().strip()
                wait_serving(target, deadline)

            if checks.run("server starts, prints its address and reports SERVING", start):
                suite = InteropChecks(target, server)
                s = suite
                for name, fn, *requires in [
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
                    ("OpenAccount for a new ACTIVE user: an ACTIVE USD account, zero balances", s.open_account),
                    ("OpenAccount for a SUSPENDED user is FAILED_PRECONDITION OWNER_NOT_ACTIVE, unknown NOT_FOUND", s.open_account_refused),
                    ("CreditAccount posts funds; a replay by key credits nothing more", s.credit_account),
                    ("GetAccount returns the balances after the credit", s.get_account),
                    ("Authorize within funds: APPROVED, 00, held, available_after, expires_at", s.authorize_approved),
                    ("Authorize above available: DECLINED 51 with status OK, nothing held", s.authorize_declined),
                    ("Authorize at a risk deny-listed merchant: DECLINED 59, decided by RISK", s.authorize_risk_denied),
                    ("Authorize replay with the same idempotency key returns the same authorization", s.authorize_replay),
                    ("Authorize same key, other amount: ALREADY_EXISTS, ErrorInfo IDEMPOTENCY_KEY_REUSED", s.authorize_key_reused),
                    ("Authorize amount 0, currency 'usd': INVALID_ARGUMENT, BadRequest on both fields", s.authorize_malformed),
                    ("Capture 1000 of a 3000 hold posts 1000 and releases the rest", s.capture_partial),
                    ("Void after Capture is FAILED_PRECONDITION ALREADY_CAPTURED, nothing changes", s.void_after_capture),
                    ("UpdateAccountStatus FROZEN (57 declines), same status no event, ACTIVE, CLOSED", s.update_account_status,
                     [f"{PAYMENTS_SERVICE}.UpdateAccountStatus"]),
                    ("UpdateAccountStatus: CLOSED is final (FAILED_PRECONDITION ACCOUNT_CLOSED); BadRequest on both fields; NOT_FOUND",
                     s.update_account_status_refused, [f"{PAYMENTS_SERVICE}.UpdateAccountStatus"]),
                    (f"AuthorizeStream: {STREAM_REQUESTS} requests, one answer each, the malformed one an error, ends OK", s.authorize_stream),
                    (f"BatchCapture: {BATCH_GOOD} captured, unknown and already-captured listed by index", s.batch_capture),
                    ("ListAuthorizations by account streams that account's authorizations in creation order", s.list_authorizations),
                    ("WatchEvents from 1 replays every event of this run, sequences 1, 2, 3...", s.watch_events),
                    ("WatchEvents from last + 1 delivers the next commit", s.watch_events_live),
                    ("Score: ALLOW with no reasons; a deny-listed merchant DENY 1000 with its rule", s.risk_score,
                     [f"{RISK_SERVICE}.Score", "courier.risk.v1.ScoreRequest.available_amount"]),
                    ("Score with four bad fields: INVALID_ARGUMENT, BadRequest on all four", s.risk_score_malformed,
                     [f"{RISK_SERVICE}.Score", "courier.risk.v1.ScoreRequest.available_amount"]),
                    ("ScoreBatch: in order, a malformed item its own INVALID_ARGUMENT; an empty batch refused",
                     s.risk_score_batch, [f"{RISK_SERVICE}.ScoreBatch"]),
                    ("GetRuleSet: the active set, a named one, the file's rollout and rules_file", s.risk_get_rule_set,
                     [f"{RISK_SERVICE}.GetRuleSet"]),
                    ("GetRuleSet of an unknown version is NOT_FOUND, a malformed one INVALID_ARGUMENT",
                     s.risk_get_rule_set_refused, [f"{RISK_SERVICE}.GetRuleSet"]),
                    ("SetRollout SHADOW then PERCENTAGE 100: Score shows the shadow, then the candidate deciding",
                     s.risk_set_rollout, [f"{RISK_SERVICE}.SetRollout", f"{RISK_SERVICE}.Score"]),
                    ("SetRollout refused: CANDIDATE_IS_ACTIVE, NOT_FOUND, BadRequest; the rollout unchanged",
                     s.risk_set_rollout_refused, [f"{RISK_SERVICE}.SetRollout"]),
                    ("GetRolloutStats counts a fresh rollout exactly, stricter and more lenient shadows",
                     s.risk_get_rollout_stats, [f"{RISK_SERVICE}.GetRolloutStats", f"{RISK_SERVICE}.SetRollout"]),
                    ("a risk:score token: Score OK, GetRolloutStats PERMISSION_DENIED (risk:admin)",
                     s.risk_admin_needs_scope, [f"{RISK_SERVICE}.GetRolloutStats", f"{RISK_SERVICE}.Score"]),
                    ("ReloadRules puts the file's rollout back in force", s.risk_reload_rules,
                     [f"{RISK_SERVICE}.ReloadRules"]),
                    ("ReloadRules of a broken file: FAILED_PRECONDITION RULES_INVALID, the rules in force stay",
                     s.risk_reload_rules_invalid, [f"{RISK_SERVICE}.ReloadRules"]),
                    ("no token: ListUsers is UNAUTHENTICATED", s.no_token_unauthenticated),
                    ("a forged token: UNAUTHENTICATED, the token not echoed", s.forged_token_unauthenticated),
                    ("no token: health Check '' is still SERVING (health is open)", s.health_open_without_token),
                    ("health Check '' is SERVING", s.health_serving("")),
                    (f"health Check '{SERVICE}' is SERVING", s.health_serving(SERVICE)),
                    (f"health Check '{PAYMENTS_SERVICE}' is SERVING", s.health_serving(PAYMENTS_SERVICE)),
                    ("health Check of an unknown service is NOT_FOUND", s.health_unknown),
                    ("reflection v1alpha lists the user and health services", s.reflection_v1alpha_services),
                    ("reflection v1alpha resolves UserService and its dependencies", s.reflection_v1alpha_descriptor),
                    ("reflection v1alpha resolves PaymentService, its streams and google.rpc.Status", s.reflection_v1alpha_payments),
                    ("reflection v1 lists services and returns users.proto", s.reflection_v1),
                    ("every RPC of the three services in the stubs in use was called", s.every_rpc_called),
                ]:
                    checks.run(name, fn, *requires)

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
