"""`AsyncClient`: the asyncio client (grpc.aio), the same methods as `Client`, awaited."""

from __future__ import annotations

import asyncio
import datetime
import os
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TypeVar

import grpc
import grpc.aio
from courier.payments.v1 import payments_pb2, payments_pb2_grpc
from courier.users.v1 import users_pb2, users_pb2_grpc
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2

from . import _shared
from ._config import DEFAULT_TIMEOUT, ChannelOptions, PathOrPem, channel_config
from ._shared import BatchCaptureResult, Call, StreamAnswer
from .errors import CourierError, Unavailable, from_rpc_error
from .interceptors import Observer, aio_interceptor
from .retry import RetryPolicy

_T = TypeVar("_T")
_Req = TypeVar("_Req", bound=Message)
_Resp = TypeVar("_Resp")
_DEFAULT_RETRY = RetryPolicy()


class AsyncClient:
    """The asyncio twin of `courier_client.Client`, with the same arguments and defaults (127.0.0.1:50051, the
    token from ./courier-data/token, a 10 s deadline per call, retries of the idempotent methods). Open it in
    a coroutine, `async with AsyncClient() as courier:`, so that its channel belongs to the running loop."""

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
        interceptors: Sequence[Observer | grpc.aio.ClientInterceptor] = (),
        options: ChannelOptions = (),
    ) -> None:
        config = channel_config(
            target, token=token, data_dir=data_dir, tls=tls, ca=ca, cert=cert, key=key,
            server_name=server_name, retry=retry, options=options,
        )
        self.target = config.target.address
        self.timeout = timeout
        self._metadata = config.metadata
        wrapped: list[grpc.aio.ClientInterceptor] = []
        for interceptor in interceptors:
            if isinstance(interceptor, grpc.aio.ClientInterceptor):
                wrapped.append(interceptor)
            else:
                wrapped.extend(aio_interceptor(interceptor))
        if config.credentials is not None:
            self.channel = grpc.aio.secure_channel(
                config.target.address, config.credentials, options=config.options, interceptors=wrapped
            )
        else:
            self.channel = grpc.aio.insecure_channel(config.target.address, options=config.options, interceptors=wrapped)
        self.users = users_pb2_grpc.UserServiceStub(self.channel)
        self.payments = payments_pb2_grpc.PaymentServiceStub(self.channel)
        self._health_check = self.channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    async def close(self) -> None:
        await self.channel.close(None)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.close()

    def _deadline(self, timeout: float | None) -> float:
        return self.timeout if timeout is None else timeout

    async def _unary(self, method: str, call: Callable[[], Awaitable[_T]], key: str = "") -> _T:
        try:
            return await call()
        except grpc.RpcError as e:
            raise from_rpc_error(e, method=method, idempotency_key=key) from e

    async def _stream(self, method: str, call: Callable[[], AsyncIterable[_T]]) -> AsyncGenerator[_T, None]:
        responses = call()
        try:
            async for response in responses:
                yield response
        except grpc.RpcError as e:
            raise from_rpc_error(e, method=method) from e
        finally:
            cancel = getattr(responses, "cancel", None)
            if cancel is not None:
                cancel()

    async def _call(
        self, call: Call[_Req], rpc: grpc.aio.UnaryUnaryMultiCallable[_Req, _Resp], timeout: float | None
    ) -> _Resp:
        """Sends a unary `call` on the stub method `rpc`, with the deadline and the token."""
        return await self._unary(
            call.method,
            lambda: rpc(call.request, timeout=self._deadline(timeout), metadata=self._metadata),
            call.idempotency_key,
        )

    def _call_stream(
        self, call: Call[_Req], rpc: grpc.aio.UnaryStreamMultiCallable[_Req, _Resp], timeout: float | None
    ) -> AsyncGenerator[_Resp, None]:
        """Opens the server stream `call` on the stub method `rpc` (see `_stream`)."""
        return self._stream(
            call.method, lambda: rpc(call.request, timeout=self._deadline(timeout), metadata=self._metadata)
        )

    # --- health ---------------------------------------------------------------------------------------------

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """Waits until the server's health check answers SERVING; raises CourierError when it does not in time."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        delay = 0.05
        while True:
            left = deadline - loop.time()
            try:
                answer: health_pb2.HealthCheckResponse = await self._health_check(
                    health_pb2.HealthCheckRequest(), timeout=max(left, 0.01), metadata=self._metadata,
                    wait_for_ready=True,
                )
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                error: CourierError = Unavailable(f"health is {answer.status}", method="/grpc.health.v1.Health/Check")
            except grpc.RpcError as e:
                error = from_rpc_error(e, method="/grpc.health.v1.Health/Check")
            if loop.time() + delay >= deadline:
                raise error
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    # --- UserService ----------------------------------------------------------------------------------------

    async def create_user(self, name: str, email: str, *, timeout: float | None = None) -> users_pb2.User:
        response = await self._call(_shared.create_user_call(name, email), self.users.CreateUser, timeout)
        return response.user

    async def get_user(self, user_id: str, *, timeout: float | None = None) -> users_pb2.User:
        response = await self._call(_shared.get_user_call(user_id), self.users.GetUser, timeout)
        return response.user

    async def list_users(
        self,
        status: users_pb2.UserStatus.ValueType = users_pb2.USER_STATUS_UNSPECIFIED,
        *,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> AsyncGenerator[users_pb2.User, None]:
        async for response in self.list_users_pages(status, page_size=page_size, page_token=page_token, timeout=timeout):
            yield response.user

    def list_users_pages(
        self,
        status: users_pb2.UserStatus.ValueType = users_pb2.USER_STATUS_UNSPECIFIED,
        *,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> AsyncGenerator[users_pb2.ListUsersResponse, None]:
        call = _shared.list_users_call(status, page_size, page_token)
        return self._call_stream(call, self.users.ListUsers, timeout)

    async def update_user_status(
        self, user_id: str, status: users_pb2.UserStatus.ValueType, *, timeout: float | None = None
    ) -> users_pb2.User:
        call = _shared.update_user_status_call(user_id, status)
        response = await self._call(call, self.users.UpdateUserStatus, timeout)
        return response.user

    # --- PaymentService: accounts ---------------------------------------------------------------------------

    async def open_account(
        self, owner_user_id: str, currency: str, *, credit_limit: int = 0, timeout: float | None = None
    ) -> payments_pb2.Account:
        call = _shared.open_account_call(owner_user_id, currency, credit_limit)
        response = await self._call(call, self.payments.OpenAccount, timeout)
        return response.account

    async def get_account(self, account_id: str, *, timeout: float | None = None) -> payments_pb2.Account:
        response = await self._call(_shared.get_account_call(account_id), self.payments.GetAccount, timeout)
        return response.account

    async def credit_account(
        self,
        account_id: str,
        amount: int,
        currency: str,
        *,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> payments_pb2.CreditAccountResponse:
        call = _shared.credit_account_call(account_id, amount, currency, idempotency_key)
        return await self._call(call, self.payments.CreditAccount, timeout)

    async def update_account_status(
        self, account_id: str, status: payments_pb2.AccountStatus.ValueType, *, timeout: float | None = None
    ) -> payments_pb2.Account:
        call = _shared.update_account_status_call(account_id, status)
        response = await self._call(call, self.payments.UpdateAccountStatus, timeout)
        return response.account

    # --- PaymentService: authorizations ---------------------------------------------------------------------

    async def authorize(
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
        call = _shared.authorize_call(
            account_id, amount, currency, merchant_id=merchant_id, description=description, metadata=metadata,
            idempotency_key=idempotency_key,
        )
        response = await self._call(call, self.payments.Authorize, timeout)
        return response.authorization

    async def capture(
        self,
        authorization_id: str,
        amount: int = 0,
        *,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> payments_pb2.Authorization:
        call = _shared.capture_call(authorization_id, amount, idempotency_key)
        response = await self._call(call, self.payments.Capture, timeout)
        return response.authorization

    async def void(
        self, authorization_id: str, *, idempotency_key: str | None = None, timeout: float | None = None
    ) -> payments_pb2.Authorization:
        response = await self._call(_shared.void_call(authorization_id, idempotency_key), self.payments.Void, timeout)
        return response.authorization

    async def get_authorization(
        self, authorization_id: str, *, timeout: float | None = None
    ) -> payments_pb2.Authorization:
        call = _shared.get_authorization_call(authorization_id)
        response = await self._call(call, self.payments.GetAuthorization, timeout)
        return response.authorization

    async def list_authorizations(
        self,
        account_id: str = "",
        *,
        merchant_id: str = "",
        status: payments_pb2.AuthorizationStatus.ValueType = payments_pb2.AUTHORIZATION_STATUS_UNSPECIFIED,
        created_from: datetime.datetime | None = None,
        created_before: datetime.datetime | None = None,
        timeout: float | None = None,
    ) -> AsyncGenerator[payments_pb2.Authorization, None]:
        call = _shared.list_authorizations_call(account_id, merchant_id, status, created_from, created_before)
        async for response in self._call_stream(call, self.payments.ListAuthorizations, timeout):
            yield response.authorization

    def authorize_stream(self, *, timeout: float | None = None) -> AsyncAuthorizeStream:
        """Opens an AuthorizeStream: `await send(...)`, `async for` the answers (in completion order, paired by
        correlation id), `await done()` when there is nothing more to send. Use it as an async context manager."""
        return AsyncAuthorizeStream(self, self._deadline(timeout))

    async def authorize_many(
        self,
        requests: Iterable[payments_pb2.AuthorizeRequest] | AsyncIterable[payments_pb2.AuthorizeRequest],
        *,
        timeout: float | None = None,
    ) -> AsyncGenerator[StreamAnswer, None]:
        """Sends every request over one AuthorizeStream (correlation id: its index) and yields the answers."""

        async def messages() -> AsyncIterator[payments_pb2.AuthorizeStreamRequest]:
            index = 0
            async for request in _aiter(requests):
                yield _shared.authorize_stream_message(request, str(index))
                index += 1

        responses = self._stream(
            _shared.AUTHORIZE_STREAM,
            lambda: self.payments.AuthorizeStream(messages(), timeout=self._deadline(timeout), metadata=self._metadata),
        )
        async for response in responses:
            yield _shared.stream_answer(response)

    async def batch_capture(
        self,
        captures: Iterable[payments_pb2.CaptureRequest | str] | AsyncIterable[payments_pb2.CaptureRequest | str],
        *,
        timeout: float | None = None,
    ) -> BatchCaptureResult:
        """Captures many holds in one client stream (items: authorization ids or CaptureRequests)."""

        async def messages() -> AsyncIterator[payments_pb2.BatchCaptureRequest]:
            async for capture in _aiter(captures):
                yield _shared.batch_capture_message(capture)

        response = await self._unary(
            _shared.BATCH_CAPTURE,
            lambda: self.payments.BatchCapture(messages(), timeout=self._deadline(timeout), metadata=self._metadata),
        )
        return _shared.batch_result(response)

    def watch_events(
        self,
        from_sequence: int = 1,
        *,
        account_id: str = "",
        timeout: float | None = None,
        reconnect: int = 5,
    ) -> AsyncEventStream:
        """The event log from `from_sequence` on, then live events, resuming after a broken connection (see
        `Client.watch_events`)."""
        return AsyncEventStream(self, from_sequence, account_id, timeout, reconnect)


_Item = TypeVar("_Item")


async def _aiter(items: Iterable[_Item] | AsyncIterable[_Item]) -> AsyncIterator[_Item]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item


_CLOSE = object()


class AsyncAuthorizeStream:
    """A bidirectional AuthorizeStream on grpc.aio: send from one task, read the answers in another (or after
    sending: requests queue up, and the stream opens at the first read)."""

    def __init__(self, client: AsyncClient, timeout: float) -> None:
        self._outbox: asyncio.Queue[payments_pb2.AuthorizeStreamRequest | object] = asyncio.Queue()
        self._responses = client._stream(
            _shared.AUTHORIZE_STREAM,
            lambda: client.payments.AuthorizeStream(self._requests(), timeout=timeout, metadata=client.metadata),
        )
        self._done = False

    async def _requests(self) -> AsyncIterator[payments_pb2.AuthorizeStreamRequest]:
        while True:
            item = await self._outbox.get()
            if item is _CLOSE:
                return
            assert isinstance(item, payments_pb2.AuthorizeStreamRequest)
            yield item

    async def send(
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
        return await self.send_request(request, correlation_id=correlation_id)

    async def send_request(self, request: payments_pb2.AuthorizeRequest, *, correlation_id: str | None = None) -> str:
        if self._done:
            raise RuntimeError("this AuthorizeStream is done sending")
        message = _shared.authorize_stream_message(request, correlation_id)
        await self._outbox.put(message)
        return message.correlation_id

    async def done(self) -> None:
        """Half-closes the stream: nothing more to send; the answers still come."""
        if not self._done:
            self._done = True
            await self._outbox.put(_CLOSE)

    async def __aiter__(self) -> AsyncGenerator[StreamAnswer, None]:
        async for response in self._responses:
            yield _shared.stream_answer(response)

    async def close(self) -> None:
        """Ends the stream now (answers not yet read are dropped)."""
        await self.done()
        await self._responses.aclose()

    async def __aenter__(self) -> AsyncAuthorizeStream:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.close()


class AsyncEventStream:
    """WatchEvents as an async iterator that resumes after a broken connection (see `EventStream`)."""

    def __init__(
        self, client: AsyncClient, from_sequence: int, account_id: str, timeout: float | None, reconnect: int
    ) -> None:
        self._client = client
        self._account_id = account_id
        self._timeout = timeout
        self._reconnect = reconnect
        self.last_sequence = from_sequence - 1
        self._call: grpc.aio.UnaryStreamCall[payments_pb2.WatchEventsRequest, payments_pb2.WatchEventsResponse] | None = None
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[payments_pb2.Event]:
        failures = 0
        while not self._closed:
            request = _shared.watch_events_request(self.last_sequence + 1, self._account_id)
            self._call = self._client.payments.WatchEvents(
                request, timeout=self._timeout, metadata=self._client.metadata, wait_for_ready=self._reconnect > 0
            )
            try:
                async for response in self._call:
                    failures = 0
                    self.last_sequence = response.event.sequence
                    yield response.event
                return
            except grpc.RpcError as e:
                error = from_rpc_error(e, method=_shared.WATCH_EVENTS)
                if self._closed and error.code == grpc.StatusCode.CANCELLED:
                    return
                if not isinstance(error, Unavailable) or failures >= self._reconnect:
                    raise error from e
                failures += 1
                await asyncio.sleep(min(0.1 * 2**failures, 2.0))
            except asyncio.CancelledError:
                # grpc.aio raises this when the call is cancelled by close()
                if self._closed:
                    return
                raise

    def close(self) -> None:
        self._closed = True
        if self._call is not None:
            self._call.cancel()

    async def __aenter__(self) -> AsyncEventStream:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
