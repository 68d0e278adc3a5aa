"""Observers, and the adapters that make them grpc interceptors (sync and grpc.aio)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import grpc
import grpc.aio

if TYPE_CHECKING:
    from grpc import _CallFuture, _CallIterator

_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")

Done = Callable[[grpc.StatusCode], None]


class Observer(Protocol):
    """Told `start(method)` as a call begins (method is `/package.Service/Method`); the callable it returns is
    called once with the call's status code when the call ends, whichever way."""

    def start(self, method: str) -> Done: ...


def _code_of(call: Any) -> grpc.StatusCode:
    # A finished sync call: its code (an RpcError is a Call too).
    try:
        code = call.code()
    except Exception:  # a call that could not even start
        return grpc.StatusCode.UNKNOWN
    return code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN


class _SyncObserving(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    def __init__(self, observer: Observer) -> None:
        self._observer = observer

    def _watch(self, done: Done, call: Any) -> None:
        reported = False

        def report(_: object = None) -> None:
            nonlocal reported
            if not reported:  # a call that is both a Future and a Call could report twice
                reported = True
                done(_code_of(call))

        # Unary answers are futures (add_done_callback runs at once if already done); streams are Calls, whose
        # add_callback runs when the RPC terminates and returns False if it already has.
        if hasattr(call, "add_done_callback"):
            call.add_done_callback(report)
        elif not call.add_callback(report):
            report()

    def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.ClientCallDetails, _Req], _CallFuture[_Resp]],
        client_call_details: grpc.ClientCallDetails,
        request: _Req,
    ) -> _CallFuture[_Resp]:
        # Started before the continuation: a blocking unary call is over when the continuation returns.
        done = self._observer.start(client_call_details.method)
        call = continuation(client_call_details, request)
        self._watch(done, call)
        return call

    def intercept_unary_stream(
        self,
        continuation: Callable[[grpc.ClientCallDetails, _Req], _CallIterator[_Resp]],
        client_call_details: grpc.ClientCallDetails,
        request: _Req,
    ) -> _CallIterator[_Resp]:
        # Started before the continuation: a blocking unary call is over when the continuation returns.
        done = self._observer.start(client_call_details.method)
        call = continuation(client_call_details, request)
        self._watch(done, call)
        return call

    def intercept_stream_unary(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Iterator[_Req]], _CallFuture[_Resp]],
        client_call_details: grpc.ClientCallDetails,
        request_iterator: Iterator[_Req],
    ) -> _CallFuture[_Resp]:
        done = self._observer.start(client_call_details.method)
        call = continuation(client_call_details, request_iterator)
        self._watch(done, call)
        return call

    def intercept_stream_stream(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Iterator[_Req]], _CallIterator[_Resp]],
        client_call_details: grpc.ClientCallDetails,
        request_iterator: Iterator[_Req],
    ) -> _CallIterator[_Resp]:
        done = self._observer.start(client_call_details.method)
        call = continuation(client_call_details, request_iterator)
        self._watch(done, call)
        return call


def sync_interceptor(observer: Observer) -> _SyncObserving:
    """A grpc interceptor (every call shape) for `grpc.intercept_channel` that reports to `observer`."""
    return _SyncObserving(observer)


def _method(details: grpc.aio.ClientCallDetails) -> str:
    # grpc.aio passes the method as bytes, whatever its type hints say.
    method: str | bytes = details.method
    return method.decode() if isinstance(method, bytes) else method


class _AioObserving:
    def __init__(self, observer: Observer) -> None:
        self._observer = observer
        # Reports in flight: the event loop keeps only weak references to tasks.
        self._pending: set[asyncio.Task[None]] = set()

    def _watch(self, done: Done, call: grpc.aio.Call) -> None:

        async def report() -> None:
            try:
                code = await call.code()
            except Exception:
                code = grpc.StatusCode.UNKNOWN
            done(code)

        def finished(_: object) -> None:
            # The call is over, so its code() is ready; it is a coroutine in grpc.aio, hence the task.
            task = asyncio.get_running_loop().create_task(report())
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

        call.add_done_callback(finished)


class _AioUnaryUnary(_AioObserving, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(
        self,
        continuation: Callable[
            [grpc.aio.ClientCallDetails, _Req], Awaitable[grpc.aio.UnaryUnaryCall[_Req, _Resp]]
        ],
        client_call_details: grpc.aio.ClientCallDetails,
        request: _Req,
    ) -> _Resp | grpc.aio.UnaryUnaryCall[_Req, _Resp]:
        done = self._observer.start(_method(client_call_details))
        call = await continuation(client_call_details, request)
        self._watch(done, call)
        return call


class _AioUnaryStream(_AioObserving, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(
        self,
        continuation: Callable[
            [grpc.aio.ClientCallDetails, _Req], Awaitable[grpc.aio.UnaryStreamCall[_Req, _Resp]]
        ],
        client_call_details: grpc.aio.ClientCallDetails,
        request: _Req,
    ) -> AsyncIterator[_Resp] | grpc.aio.UnaryStreamCall[_Req, _Resp]:
        done = self._observer.start(_method(client_call_details))
        call = await continuation(client_call_details, request)
        self._watch(done, call)
        return call


class _AioStreamUnary(_AioObserving, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(
        self,
        continuation: Callable[
            [grpc.aio.ClientCallDetails, AsyncIterable[_Req] | Iterable[_Req]],
            Awaitable[grpc.aio.StreamUnaryCall[_Req, _Resp]],
        ],
        client_call_details: grpc.aio.ClientCallDetails,
        request_iterator: AsyncIterable[_Req] | Iterable[_Req],
    ) -> _Resp | grpc.aio.StreamUnaryCall[_Req, _Resp]:
        done = self._observer.start(_method(client_call_details))
        call = await continuation(client_call_details, request_iterator)
        self._watch(done, call)
        return call


class _AioStreamStream(_AioObserving, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(
        self,
        continuation: Callable[
            [grpc.aio.ClientCallDetails, AsyncIterable[_Req] | Iterable[_Req]],
            Awaitable[grpc.aio.StreamStreamCall[_Req, _Resp]],
        ],
        client_call_details: grpc.aio.ClientCallDetails,
        request_iterator: AsyncIterable[_Req] | Iterable[_Req],
    ) -> AsyncIterator[_Resp] | grpc.aio.StreamStreamCall[_Req, _Resp]:
        done = self._observer.start(_method(client_call_details))
        call = await continuation(client_call_details, request_iterator)
        self._watch(done, call)
        return call


def aio_interceptor(observer: Observer) -> list[grpc.aio.ClientInterceptor]:
    """grpc.aio interceptors (one per call shape: grpc.aio dispatches on the class) reporting to `observer`."""
    return [_AioUnaryUnary(observer), _AioUnaryStream(observer), _AioStreamUnary(observer), _AioStreamStream(observer)]
