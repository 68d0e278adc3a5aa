"""Client interceptors, for both clients: pass them as `Client(interceptors=[...])` or
`AsyncClient(interceptors=[...])`.

Each one is an `Observer`: told when a call starts, it returns what to call with the status code when the call
ends. `sync_interceptor` and `aio_interceptor` turn an observer into grpc's interceptor types (all four call
shapes), which is what the clients do with the observers they are given; a grpc interceptor of your own can
be passed to the clients as well.
"""

from ._base import Observer, aio_interceptor, sync_interceptor
from .logging import LoggingInterceptor
from .metrics import CallStats, MetricsInterceptor

__all__ = [
    "CallStats",
    "LoggingInterceptor",
    "MetricsInterceptor",
    "Observer",
    "aio_interceptor",
    "sync_interceptor",
]
