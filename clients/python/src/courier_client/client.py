"""`Client`: the synchronous client of courier's UserService and PaymentService."""

from __future__ import annotations

import datetime
import os
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar, Union

import grpc
from courier.payments.v1 import payments_pb2, payments_pb2_grpc
from courier.users.v1 import users_pb2, users_pb2_grpc
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2

from . import _shared
from ._config import DEFAULT_TIMEOUT, ChannelOptions, PathOrPem, channel_config
from ._shared import BatchCaptureResult, Call, StreamAnswer
from .errors import CourierError, Unavailable, from_rpc_error
from .interceptors import Observer, sync_interceptor
from .retry import RetryPolicy

_T = TypeVar("_T")
_Req = TypeVar("_Req", bound=Message)
_Resp = TypeVar("_Resp")
GrpcInterceptor = Union[
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
]
"""Any of grpc's own client interceptors, which the clients take as they are."""
_GRPC_INTERCEPTORS = (
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
)
_DEFAULT_RETRY = RetryPolicy()


class Client:
    """A connection to a courier server (`courier up`, or `courier serve` behind any address).

    With no arguments it talks to `courier up` as started from this directory: 127.0.0.1:50051 in plaintext,
    the token read from ./courier-data/token.

    target: `host:port`, or `http://host:port` / `https://host:port`; default $COURIER_SERVER_URL, else
        127.0.0.1:50051.
    token: the bearer token; default $COURIER_TOKEN, else the file `token` in data_dir (default
        $COURIER_DATA_DIR, else ./courier-data), else none.
    tls, ca, cert, key, server_name: TLS (an https:// target or a CA turns it on), the CA to trust (PEM bytes or
        a path; default $COURIER_CA, else the system's roots), the client certificate and key for mTLS
        ($COURIER_CERT, $COURIER_KEY), and the name to check the server's certificate against.
    timeout: the deadline of each call in seconds (each method takes its own too); WatchEvents has none.
    retry: the retry policy of the idempotent methods (see `courier_client.retry`); None disables retries.
    interceptors: observers (`courier_client.interceptors`) or grpc client interceptors.
    options: more grpc channel options.
    """

    def __init__(
        self,
        target: str | None = None,
        *,
        token: str | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        tls: bool | None = None,
        ca: PathOrPem | None = None,
        cert: PathOrPem | None = None,
        key: PathOrPem | None = None,
        server_name: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = _DEFAULT_RETRY,
        interceptors: Sequence[Observer | GrpcInterceptor] = (),
        options: ChannelOptions = (),
    ) -> None:
        config = channel_config(
            target, token=token, data_dir=data_dir, tls=tls, ca=ca, cert=cert, key=key,
            server_name=server_name, retry=retry, options=options,
        )
        self.target = config.target.address
        self.timeout = timeout
        self._metadata = config.metadata
        if config.credentials is not None:
            raw = grpc.secure_channel(config.target.address, config.credentials, options=config.options)
        else:
            raw = grpc.insecure_channel(config.target.address, options=config.options)
        self._raw_channel = raw
        wrapped = [i if isinstance(i, _GRPC_INTERCEPTORS) else sync_interceptor(i) for i in interceptors]
        self.channel: grpc.Channel = grpc.intercept_channel(raw, *wrapped) if wrapped else raw
        self.users = users_pb2_grpc.UserServiceStub(self.channel)
        """The generated stubs, for what the methods below do not cover; pass `metadata=client.metadata`."""
        self.payments = payments_pb2_grpc.PaymentServiceStub(self.channel)
        # grpc.health.v1's stub is untyped; the method is called by name.
        self._health_check = self.channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The metadata sent with every call (the token)."""
        return self._metadata

    def close(self) -> None:
        self._raw_channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def _deadline(self, timeout: float | None) -> float:
        return self.timeout if timeout is None else timeout

    def _unary(self, method: str, call: Callable[[], _T], key: str = "") -> _T:
        try:
            return call()
        except grpc.RpcError as e:
            raise from_rpc_error(e, method=method, idempotency_key=key) from e

    def _stream(self, method: str, call: Callable[[], Iterable[_T]]) -> Generator[_T, None, None]:
        """Iterates a server stream, errors raised as CourierError; closing the iterator cancels the call."""
        responses = call()
        try:
            yield from responses
        except grpc.RpcError as e:
            raise from_rpc_error(e, method=method) from e
        finally:
            cancel = getattr(responses, "cancel", None)
            if cancel is not None:
                cancel()

    def _call(self, call: Call[_Req], rpc: grpc.UnaryUnaryMultiCallable[_Req, _Resp], timeout: float | None) -> _Resp:
        """Sends a unary `call` on the stub method `rpc`, with the deadline and the token."""
        return self._unary(
            call.method,
            lambda: rpc(call.request, timeout=self._deadline(timeout), metadata=self._metadata),
            call.idempotency_key,
        )

    def _call_stream(
        self, call: Call[_Req], rpc: grpc.UnaryStreamMultiCallable[_Req, _Resp], timeout: float | None
    ) -> Generator[_Resp, None, None]:
        """Opens the server stream `call` on the stub method `rpc` (see `_stream`)."""
        return self._stream(
            call.method, lambda: rpc(call.request, timeout=self._deadline(timeout), metadata=self._metadata)
        )

    # --- health ---------------------------------------------------------------------------------------------

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Blocks until the server's health check answers SERVING; raises CourierError when it does not in time."""
        deadline = time.monotonic() + timeout
        delay = 0.05
        while True:
            left = deadline - time.monotonic()
            try:
                answer: health_pb2.HealthCheckResponse = self._health_check(
                    health_pb2.HealthCheckRequest(), timeout=max(left, 0.01), metadata=self._metadata,
                    wait_for_ready=True,
                )
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                error: CourierError = Unavailable(f"health is {answer.status}", method="/grpc.health.v1.Health/Check")
            except grpc.RpcError as e:
                error = from_rpc_error(e, method="/grpc.health.v1.Health/Check")
            if time.monotonic() + delay >= deadline:
                raise error
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    # --- UserService ----------------------------------------------------------------------------------------

    def create_user(self, name: str, email: str, *, timeout: float | None = None) -> users_pb2.User:
        return self._call(_shared.create_user_call(name, email), self.users.CreateUser, timeout).user

    def get_user(self, user_id: str, *, timeout: float | None = None) -> users_pb2.User:
        return self._call(_shared.get_user_call(user_id), self.users.GetUser, timeout).user

    def list_users(
        self,
        status: users_pb2.UserStatus.ValueType = users_pb2.USER_STATUS_UNSPECIFIED,
        *,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> Generator[users_pb2.User, None, None]:
        """Every user (with `status`, if given), in id order, as a stream; `page_token` resumes after a user
        (see `list_users_pages` for the tokens). The deadline bounds the whole stream."""
        for response in self.list_users_pages(status, page_size=page_size, page_token=page_token, timeout=timeout):
            yield response.user

    def list_users_pages(
        self,
        status: users_pb2.UserStatus.ValueType = users_pb2.USER_STATUS_UNSPECIFIED,
        *,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> Generator[users_pb2.ListUsersResponse, None, None]:
        """ListUsers' own messages: each user with the resume token that continues after it."""
        call = _shared.list_users_call(status, page_size, page_token)
        return self._call_stream(call, self.users.ListUsers, timeout)

    def update_user_status(
        self, user_id: str, status: users_pb2.UserStatus.ValueType, *, timeout: float | None = None
    ) -> users_pb2.User:
        return self._call(_shared.update_user_status_call(user_id, status), self.users.UpdateUserStatus, timeout).user

    # --- PaymentService: accounts ---------------------------------------------------------------------------

    def open_account(
        self, owner_user_id: str, currency: str, *, credit_limit: int = 0, timeout: float | None = None
    ) -> payments_pb2.Account:
        call = _shared.open_account_call(owner_user_id, currency, credit_limit)
        return self._call(call, self.payments.OpenAccount, timeout).account

    def get_account(self, account_id: str, *, timeout: float | None = None) -> payments_pb2.Account:
        return self._call(_shared.get_account_call(account_id), self.payments.GetAccount, timeout).account

    def credit_account(
        self,
        account_id: str,
        amount: int,
        currency: str,
        *,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> payments_pb2.CreditAccountResponse:
        """Credits `amount` (minor units) to the account; the answer has the account and the event's sequence."""
        call = _shared.credit_account_call(account_id, amount, currency, idempotency_key)
        return self._call(call, self.payments.CreditAccount, timeout)

    def update_account_status(
        self, account_id: str, status: payments_pb2.AccountStatus.ValueType, *, timeout: float | None = None
    ) -> payments_pb2.Account:
        call = _shared.update_account_status_call(account_id, status)
        return self._call(call, self.payments.UpdateAccountStatus, timeout).account

    # --- PaymentService: authorizations ---------------------------------------------------------------------

    def authorize(
        self,
        account_id: str,
        amount: int,
        currency: str,
        *,
        merchant_id: str,
        description: str = "",
        metadata: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> payments_pb2.Authorization:
        """Holds `amount` on the account. A decline is an answer (decision DECLINED, a response code), not an
        error. The key is generated when not given: pass your own to be able to retry after an unknown outcome
        (or read it from the error's `idempotency_key`)."""
        call = _shared.authorize_call(
            account_id, amount, currency, merchant_id=merchant_id, description=description, metadata=metadata,
            idempotency_key=idempotency_key,
        )
        return self._call(call, self.payments.Authorize, timeout).authorization

    def capture(
        self,
        authorization_id: str,
        amount: int = 0,
        *,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> payments_pb2.Authorization:
        """Captures `amount` of the hold (0: all of it)."""
        call = _shared.capture_call(authorization_id, amount, idempotency_key)
        return self._call(call, self.payments.Capture, timeout).authorization

    def void(
        self, authorization_id: str, *, idempotency_key: str | None = None, timeout: float | None = None
    ) -> payments_pb2.Authorization:
        call = _shared.void_call(authorization_id, idempotency_key)
        return self._call(call, self.payments.Void, timeout).authorization

    def get_authorization(self, authorization_id: str, *, timeout: float | None = None) -> payments_pb2.Authorization:
        call = _shared.get_authorization_call(authorization_id)
        return self._call(call, self.payments.GetAuthorization, timeout).authorization

    def list_authorizations(
        self,
        account_id: str = "",
        *,
        merchant_id: str = "",
        status: payments_pb2.AuthorizationStatus.ValueType = payments_pb2.AUTHORIZATION_STATUS_UNSPECIFIED,
        created_from: datetime.datetime | None = None,
        created_before: datetime.datetime | None = None,
        timeout: float | None = None,
    ) -> Generator[payments_pb2.Authorization, None, None]:
        """The authorizations that match, as a stream (the deadline bounds all of it)."""
        call = _shared.list_authorizations_call(account_id, merchant_id, status, created_from, created_before)
        responses = self._call_stream(call, self.payments.ListAuthorizations, timeout)
        return (response.authorization for response in responses)  # closing it closes the call

    def authorize_stream(self, *, timeout: float | None = None) -> AuthorizeStream:
        """Opens an AuthorizeStream: `send()` requests, iterate the answers (in completion order, paired by
        correlation id), `done()` when there is nothing more to send. Use it as a context manager."""
        return AuthorizeStream(self, self._deadline(timeout))

    def authorize_many(
        self, requests: Iterable[payments_pb2.AuthorizeRequest], *, timeout: float | None = None
    ) -> Generator[StreamAnswer, None, None]:
        """Sends every request over one AuthorizeStream (correlation id: its index as a string, keys generated
        where missing) and yields the answers as they come."""

        def messages() -> Iterator[payments_pb2.AuthorizeStreamRequest]:
            for index, request in enumerate(requests):
                yield _shared.authorize_stream_message(request, str(index))

        responses = self._stream(
            _shared.AUTHORIZE_STREAM,
            lambda: self.payments.AuthorizeStream(messages(), timeout=self._deadline(timeout), metadata=self._metadata),
        )
        return (_shared.stream_answer(response) for response in responses)

    def batch_capture(
        self, captures: Iterable[payments_pb2.CaptureRequest | str], *, timeout: float | None = None
    ) -> BatchCaptureResult:
        """Captures many holds in one client stream: each item an authorization id (capture all of it) or a
        CaptureRequest (keys generated where missing). Items fail one by one, listed by index in the result."""
        messages = (_shared.batch_capture_message(capture) for capture in captures)
        response = self._unary(
            _shared.BATCH_CAPTURE,
            lambda: self.payments.BatchCapture(messages, timeout=self._deadline(timeout), metadata=self._metadata),
        )
        return _shared.batch_result(response)

    def watch_events(
        self,
        from_sequence: int = 1,
        *,
        account_id: str = "",
        timeout: float | None = None,
        reconnect: int = 5,
    ) -> EventStream:
        """The event log from `from_sequence` on (1: everything), then live events, without end: iterate it,
        and `close()` it (or leave its `with` block) when done. If the stream breaks (UNAVAILABLE: a restart,
        a lost connection) it resumes from the sequence after the last event it yielded, up to `reconnect`
        times in a row, so the events stay gap-free and never repeat. `timeout` bounds each connection."""
        return EventStream(self, from_sequence, account_id, timeout, reconnect)


_CLOSE = object()


class AuthorizeStream:
    """A bidirectional AuthorizeStream: send from any thread, iterate the answers in another (or after)."""

    def __init__(self, client: Client, timeout: float) -> None:
        self._outbox: queue.Queue[payments_pb2.AuthorizeStreamRequest | object] = queue.Queue()
        self._responses = client._stream(
            _shared.AUTHORIZE_STREAM,
            lambda: client.payments.AuthorizeStream(self._requests(), timeout=timeout, metadata=client.metadata),
        )
        self._closed = False
        self._lock = threading.Lock()

    def _requests(self) -> Iterator[payments_pb2.AuthorizeStreamRequest]:
        while True:
            item = self._outbox.get()
            if item is _CLOSE:
                return
            assert isinstance(item, payments_pb2.AuthorizeStreamRequest)
            yield item

    def send(
        self,
        account_id: str,
        amount: int,
        currency: str,
        *,
        merchant_id: str,
        description: str = "",
        metadata: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> str:
        """Queues one authorization; returns its correlation id (generated unless given)."""
        request = _shared.authorize_request(
            account_id, amount, currency, merchant_id=merchant_id, description=description, metadata=metadata,
            idempotency_key=idempotency_key,
        )
        return self.send_request(request, correlation_id=correlation_id)

    def send_request(self, request: payments_pb2.AuthorizeRequest, *, correlation_id: str | None = None) -> str:
        message = _shared.authorize_stream_message(request, correlation_id)
        with self._lock:
            if self._closed:
                raise RuntimeError("this AuthorizeStream is done sending")
            self._outbox.put(message)
        return message.correlation_id

    def done(self) -> None:
        """Half-closes the stream: nothing more to send; the answers still come."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._outbox.put(_CLOSE)

    def __iter__(self) -> Generator[StreamAnswer, None, None]:
        for response in self._responses:
            yield _shared.stream_answer(response)

    def close(self) -> None:
        """Ends the stream now (answers not yet read are dropped)."""
        self.done()
        close = getattr(self._responses, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> AuthorizeStream:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


class EventStream:
    """WatchEvents as an iterator that resumes after a broken connection; `last_sequence` is the last event
    yielded (0 before any), where a later `watch_events(last_sequence + 1)` picks up."""

    def __init__(self, client: Client, from_sequence: int, account_id: str, timeout: float | None, reconnect: int):
        self._client = client
        self._account_id = account_id
        self._timeout = timeout
        self._reconnect = reconnect
        self.last_sequence = from_sequence - 1
        self._call: Any = None  # the grpc call in progress, to cancel
        self._closed = False

    def _open(self) -> Iterable[payments_pb2.WatchEventsResponse]:
        request = _shared.watch_events_request(self.last_sequence + 1, self._account_id)
        call = self._client.payments.WatchEvents(
            request, timeout=self._timeout, metadata=self._client.metadata, wait_for_ready=self._reconnect > 0
        )
        self._call = call
        return call

    def __iter__(self) -> Iterator[payments_pb2.Event]:
        failures = 0
        while not self._closed:
            try:
                for response in self._open():
                    failures = 0
                    self.last_sequence = response.event.sequence
                    yield response.event
                return  # the server ended the stream (it does not, unless shutting down)
            except grpc.RpcError as e:
                error = from_rpc_error(e, method=_shared.WATCH_EVENTS)
                if self._closed and error.code == grpc.StatusCode.CANCELLED:
                    return
                if not isinstance(error, Unavailable) or failures >= self._reconnect:
                    raise error from e
                failures += 1
                time.sleep(min(0.1 * 2**failures, 2.0))

    def close(self) -> None:
        self._closed = True
        cancel = getattr(self._call, "cancel", None)
        if cancel is not None:
            cancel()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
