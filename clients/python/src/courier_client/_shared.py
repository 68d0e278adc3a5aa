"""Request building and answer decoding that the sync and async clients share.

Each `*_call` function builds what one client method sends (`Call`: the request, the method's full name and the
idempotency key, generated when not given); the clients only send it on their own stubs, sync or async, and map
the answer and the errors. Streams get their messages from here too.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from courier.payments.v1 import payments_pb2
from courier.users.v1 import users_pb2
from google.protobuf.message import Message

from .errors import CourierError, from_status

USERS = "/courier.users.v1.UserService/"
PAYMENTS = "/courier.payments.v1.PaymentService/"
# The streaming methods' full names, for their errors (the clients open them without a `Call`).
AUTHORIZE_STREAM = PAYMENTS + "AuthorizeStream"
BATCH_CAPTURE = PAYMENTS + "BatchCapture"
WATCH_EVENTS = PAYMENTS + "WatchEvents"

_Request = TypeVar("_Request", bound=Message)


def new_key() -> str:
    """A fresh idempotency key (or correlation id): a random UUID, as good as any the server accepts."""
    return str(uuid.uuid4())


@dataclass(frozen=True)
class Call(Generic[_Request]):
    """One call to make: the request, and what an error from it names (the method's full name, and the
    idempotency key the request carries: empty for a method that takes none)."""

    method: str
    request: _Request
    idempotency_key: str = ""


# --- UserService ------------------------------------------------------------------------------------------


def create_user_call(name: str, email: str) -> Call[users_pb2.CreateUserRequest]:
    return Call(USERS + "CreateUser", users_pb2.CreateUserRequest(name=name, email=email))


def get_user_call(user_id: str) -> Call[users_pb2.GetUserRequest]:
    return Call(USERS + "GetUser", users_pb2.GetUserRequest(id=user_id))


def list_users_call(
    status: users_pb2.UserStatus.ValueType, page_size: int, page_token: str
) -> Call[users_pb2.ListUsersRequest]:
    request = users_pb2.ListUsersRequest(status=status, page_size=page_size, page_token=page_token)
    return Call(USERS + "ListUsers", request)


def update_user_status_call(
    user_id: str, status: users_pb2.UserStatus.ValueType
) -> Call[users_pb2.UpdateUserStatusRequest]:
    return Call(USERS + "UpdateUserStatus", users_pb2.UpdateUserStatusRequest(id=user_id, status=status))


# --- PaymentService: accounts -----------------------------------------------------------------------------


def open_account_call(owner_user_id: str, currency: str, credit_limit: int) -> Call[payments_pb2.OpenAccountRequest]:
    request = payments_pb2.OpenAccountRequest(owner_user_id=owner_user_id, currency=currency, credit_limit=credit_limit)
    return Call(PAYMENTS + "OpenAccount", request)


def get_account_call(account_id: str) -> Call[payments_pb2.GetAccountRequest]:
    return Call(PAYMENTS + "GetAccount", payments_pb2.GetAccountRequest(account_id=account_id))


def credit_account_call(
    account_id: str, amount: int, currency: str, idempotency_key: str | None
) -> Call[payments_pb2.CreditAccountRequest]:
    request = payments_pb2.CreditAccountRequest(
        account_id=account_id, amount=amount, currency=currency, idempotency_key=idempotency_key or new_key()
    )
    return Call(PAYMENTS + "CreditAccount", request, request.idempotency_key)


def update_account_status_call(
    account_id: str, status: payments_pb2.AccountStatus.ValueType
) -> Call[payments_pb2.UpdateAccountStatusRequest]:
    request = payments_pb2.UpdateAccountStatusRequest(account_id=account_id, status=status)
    return Call(PAYMENTS + "UpdateAccountStatus", request)


# --- PaymentService: authorizations -----------------------------------------------------------------------


def authorize_request(
    account_id: str,
    amount: int,
    currency: str,
    *,
    merchant_id: str,
    description: str = "",
    metadata: Mapping[str, str] | None = None,
    idempotency_key: str | None = None,
) -> payments_pb2.AuthorizeRequest:
    """An AuthorizeRequest for `authorize`, `authorize_many` or an AuthorizeStream; the key is generated when
    not given, and fixed from here on, so every retry of the request sends the same one."""
    return payments_pb2.AuthorizeRequest(
        idempotency_key=idempotency_key or new_key(),
        account_id=account_id,
        merchant_id=merchant_id,
        amount=amount,
        currency=currency,
        description=description,
        metadata=dict(metadata or {}),
    )


_Keyed = TypeVar("_Keyed", payments_pb2.AuthorizeRequest, payments_pb2.CaptureRequest)


def _keyed(request: _Keyed) -> _Keyed:
    """`request`, or a copy of it with a generated idempotency key if it has none (the caller's stays as is)."""
    if request.idempotency_key:
        return request
    copy = type(request)()
    copy.CopyFrom(request)
    copy.idempotency_key = new_key()
    return copy


def with_key(request: payments_pb2.AuthorizeRequest) -> payments_pb2.AuthorizeRequest:
    """`request`, or a copy of it with a generated idempotency key if it has none."""
    return _keyed(request)


def capture_request(
    capture: payments_pb2.CaptureRequest | str, amount: int = 0, idempotency_key: str | None = None
) -> payments_pb2.CaptureRequest:
    """A CaptureRequest from an authorization id (capturing `amount`, 0 = all of the hold), or the given one
    with a generated key if it has none."""
    if isinstance(capture, str):
        return payments_pb2.CaptureRequest(
            authorization_id=capture, amount=amount, idempotency_key=idempotency_key or new_key()
        )
    return _keyed(capture)


def authorize_call(
    account_id: str,
    amount: int,
    currency: str,
    *,
    merchant_id: str,
    description: str,
    metadata: Mapping[str, str] | None,
    idempotency_key: str | None,
) -> Call[payments_pb2.AuthorizeRequest]:
    request = authorize_request(
        account_id, amount, currency, merchant_id=merchant_id, description=description, metadata=metadata,
        idempotency_key=idempotency_key,
    )
    return Call(PAYMENTS + "Authorize", request, request.idempotency_key)


def capture_call(authorization_id: str, amount: int, idempotency_key: str | None) -> Call[payments_pb2.CaptureRequest]:
    request = capture_request(authorization_id, amount, idempotency_key)
    return Call(PAYMENTS + "Capture", request, request.idempotency_key)


def void_call(authorization_id: str, idempotency_key: str | None) -> Call[payments_pb2.VoidRequest]:
    request = payments_pb2.VoidRequest(authorization_id=authorization_id, idempotency_key=idempotency_key or new_key())
    return Call(PAYMENTS + "Void", request, request.idempotency_key)


def get_authorization_call(authorization_id: str) -> Call[payments_pb2.GetAuthorizationRequest]:
    request = payments_pb2.GetAuthorizationRequest(authorization_id=authorization_id)
    return Call(PAYMENTS + "GetAuthorization", request)


def list_authorizations_call(
    account_id: str,
    merchant_id: str,
    status: payments_pb2.AuthorizationStatus.ValueType,
    created_from: datetime.datetime | None,
    created_before: datetime.datetime | None,
) -> Call[payments_pb2.ListAuthorizationsRequest]:
    request = payments_pb2.ListAuthorizationsRequest(account_id=account_id, merchant_id=merchant_id, status=status)
    if created_from is not None:
        request.created_from.FromDatetime(created_from)
    if created_before is not None:
        request.created_before.FromDatetime(created_before)
    return Call(PAYMENTS + "ListAuthorizations", request)


# --- PaymentService: the messages of the streams ----------------------------------------------------------


def authorize_stream_message(
    request: payments_pb2.AuthorizeRequest, correlation_id: str | None
) -> payments_pb2.AuthorizeStreamRequest:
    """One message of an AuthorizeStream: the request (a key generated if it has none) and its correlation id
    (generated unless given)."""
    return payments_pb2.AuthorizeStreamRequest(correlation_id=correlation_id or new_key(), request=with_key(request))


def batch_capture_message(capture: payments_pb2.CaptureRequest | str) -> payments_pb2.BatchCaptureRequest:
    """One item of a BatchCapture: an authorization id (capture all of it) or a CaptureRequest (see
    `capture_request`)."""
    return payments_pb2.BatchCaptureRequest(capture=capture_request(capture))


def watch_events_request(from_sequence: int, account_id: str) -> payments_pb2.WatchEventsRequest:
    return payments_pb2.WatchEventsRequest(from_sequence=from_sequence, account_id=account_id)


@dataclass(frozen=True)
class StreamAnswer:
    """One answer of AuthorizeStream: the authorization (approved or declined: a decline is no error), or the
    error of that one message (the stream goes on). Pair it with its request by `correlation_id`."""

    correlation_id: str
    authorization: payments_pb2.Authorization | None
    error: CourierError | None

    @property
    def ok(self) -> bool:
        return self.error is None


def stream_answer(response: payments_pb2.AuthorizeStreamResponse) -> StreamAnswer:
    if response.WhichOneof("result") == "error":
        error = from_status(response.error, method=AUTHORIZE_STREAM)
        return StreamAnswer(response.correlation_id, None, error)
    return StreamAnswer(response.correlation_id, response.authorization, None)


@dataclass(frozen=True)
class BatchFailure:
    """An item of a BatchCapture that failed: its index in what was sent, and why."""

    index: int
    authorization_id: str
    error: CourierError


@dataclass(frozen=True)
class BatchCaptureResult:
    """BatchCapture's summary, the failures decoded into errors."""

    captured: int
    failed: int
    captured_amount: int
    failures: list[BatchFailure] = field(default_factory=list)
    # The server lists a bounded number of failures; `failed` counts them all.
    failures_truncated: bool = False


def batch_result(response: payments_pb2.BatchCaptureResponse) -> BatchCaptureResult:
    failures = [
        BatchFailure(f.index, f.authorization_id, from_status(f.error, method=BATCH_CAPTURE))
        for f in response.failures
    ]
    return BatchCaptureResult(
        response.captured, response.failed, response.captured_amount, failures, response.failures_truncated
    )
