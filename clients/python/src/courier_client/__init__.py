"""courier-client: sync (`Client`) and asyncio (`AsyncClient`) clients for courier's UserService and
PaymentService.

    from courier_client import Client
    courier = Client()  # `courier up` on 127.0.0.1:50051, its token from ./courier-data/token

Failures raise `courier_client.errors.CourierError` subclasses (`NotFound`, `InvalidArgument`, ...) with the
decoded google.rpc details; the generated messages are in `courier.users.v1.users_pb2` and
`courier.payments.v1.payments_pb2`, and their enums are re-exported here.
"""

from courier.payments.v1.payments_pb2 import (
    Account,
    AccountStatus,
    Authorization,
    AuthorizationStatus,
    AuthorizeRequest,
    CaptureRequest,
    Decision,
    DeclineReason,
    Event,
    EventType,
)
from courier.users.v1.users_pb2 import User, UserStatus

from . import errors, interceptors
from ._config import DEFAULT_TARGET, DEFAULT_TIMEOUT, resolve_token
from ._shared import BatchCaptureResult, BatchFailure, StreamAnswer, authorize_request
from .aio import AsyncAuthorizeStream, AsyncClient, AsyncEventStream
from .client import AuthorizeStream, Client, EventStream
from .errors import CourierError, FieldViolation
from .retry import IDEMPOTENT_METHODS, RetryPolicy

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_TARGET",
    "DEFAULT_TIMEOUT",
    "IDEMPOTENT_METHODS",
    "Account",
    "AccountStatus",
    "AsyncAuthorizeStream",
    "AsyncClient",
    "AsyncEventStream",
    "Authorization",
    "AuthorizationStatus",
    "AuthorizeRequest",
    "AuthorizeStream",
    "BatchCaptureResult",
    "BatchFailure",
    "CaptureRequest",
    "Client",
    "CourierError",
    "Decision",
    "DeclineReason",
    "Event",
    "EventStream",
    "EventType",
    "FieldViolation",
    "RetryPolicy",
    "StreamAnswer",
    "User",
    "UserStatus",
    "authorize_request",
    "errors",
    "interceptors",
    "resolve_token",
]
