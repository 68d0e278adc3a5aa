"""Request building and answer decoding that the sync and async clients share."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from courier.payments.v1 import payments_pb2

from .errors import CourierError, from_status

USERS = "/courier.users.v1.UserService/"
PAYMENTS = "/courier.payments.v1.PaymentService/"


def new_key() -> str:
    """A fresh idempotency key (or correlation id): a random UUID, as good as any the server accepts."""
    return str(uuid.uuid4())


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


def with_key(request: payments_pb2.AuthorizeRequest) -> payments_pb2.AuthorizeRequest:
    """`request`, or a copy of it with a generated idempotency key if it has none."""
    if request.idempotency_key:
        return request
    copy = payments_pb2.AuthorizeRequest()
    copy.CopyFrom(request)
    copy.idempotency_key = new_key()
    return copy


def capture_request(
    capture: payments_pb2.CaptureRequest | str, amount: int = 0, idempotency_key: str | None = None
) -> payments_pb2.CaptureRequest:
    """A CaptureRequest from an authorization id (capturing `amount`, 0 = all of the hold), or the given one
    with a generated key if it has none."""
    if isinstance(capture, str):
        return payments_pb2.CaptureRequest(
            authorization_id=capture, amount=amount, idempotency_key=idempotency_key or new_key()
        )
    if capture.idempotency_key:
        return capture
    copy = payments_pb2.CaptureRequest()
    copy.CopyFrom(capture)
    copy.idempotency_key = new_key()
    return copy


def list_authorizations_request(
    account_id: str,
    merchant_id: str,
    status: payments_pb2.AuthorizationStatus.ValueType,
    created_from: datetime.datetime | None,
    created_before: datetime.datetime | None,
) -> payments_pb2.ListAuthorizationsRequest:
    request = payments_pb2.ListAuthorizationsRequest(account_id=account_id, merchant_id=merchant_id, status=status)
    if created_from is not None:
        request.created_from.FromDatetime(created_from)
    if created_before is not None:
        request.created_before.FromDatetime(created_before)
    return request


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
        error = from_status(response.error, method=PAYMENTS + "AuthorizeStream")
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
        BatchFailure(f.index, f.authorization_id, from_status(f.error, method=PAYMENTS + "BatchCapture"))
        for f in response.failures
    ]
    return BatchCaptureResult(
        response.captured, response.failed, response.captured_amount, failures, response.failures_truncated
    )
