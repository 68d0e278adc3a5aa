"""One log line per call: method, status code, duration."""

from __future__ import annotations

import logging
import time

import grpc

from ._base import Done

_LOG = logging.getLogger("courier_client")


class LoggingInterceptor:
    """Logs each call as it ends: `PaymentService/Authorize OK 3.1 ms`. Successes at `level` (INFO), failures
    at `error_level` (WARNING), to the `courier_client` logger unless given another."""

    def __init__(
        self,
        logger: logging.Logger | None = None,
        level: int = logging.INFO,
        error_level: int = logging.WARNING,
    ) -> None:
        self._logger = logger or _LOG
        self._level = level
        self._error_level = error_level

    def start(self, method: str) -> Done:
        started = time.monotonic()
        name = method.rsplit(".", 1)[-1]  # `/courier.payments.v1.PaymentService/Authorize` -> `PaymentService/Authorize`

        def done(code: grpc.StatusCode) -> None:
            millis = (time.monotonic() - started) * 1000
            level = self._level if code == grpc.StatusCode.OK else self._error_level
            self._logger.log(level, "%s %s %.1f ms", name, code.name, millis, extra={"grpc_method": method})

        return done
