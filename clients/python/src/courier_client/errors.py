"""Typed exceptions for courier's gRPC errors.

courier answers a failed call with a status code, a message and, in the `grpc-status-details-bin` trailer, a
`google.rpc.Status` whose details say more: a `google.rpc.BadRequest` (which fields are wrong, and why) for
INVALID_ARGUMENT, a `google.rpc.ErrorInfo` (a stable machine-readable reason, in the domain
`payments.courier.dev`) for the payments refusals, a `google.rpc.RetryInfo` for RESOURCE_EXHAUSTED. Every
failure of the clients is raised as a subclass of `CourierError` named after its code, with those details
decoded, so callers catch `NotFound` or read `error.reason` instead of unpacking trailers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

__all__ = [
    "Aborted",
    "AlreadyExists",
    "Cancelled",
    "CourierError",
    "DataLoss",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FieldViolation",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "OutOfRange",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Unknown",
    "from_rpc_error",
    "from_status",
]

DETAILS_TRAILER = "grpc-status-details-bin"

# Codes after which a money-moving call may have applied: retry it with the same idempotency key (docs/errors.md).
_UNKNOWN_OUTCOME = frozenset(
    {
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.CANCELLED,
    }
)


@dataclass(frozen=True)
class FieldViolation:
    """One entry of a google.rpc.BadRequest: the request field (a path like `request.amount`) and what is wrong."""

    field: str
    description: str
    reason: str = ""


class CourierError(Exception):
    """A failed call: its gRPC code, message and decoded google.rpc details.

    `idempotency_key` is the key the call was sent with (money-moving calls only): after an error whose
    `outcome_unknown` is true the call may have applied, and retrying with that key applies it at most once.
    """

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        details: Sequence[any_pb2.Any] = (),
        method: str = "",
        idempotency_key: str = "",
    ) -> None:
        if code is not None:
            self.code = code
        self.message = message
        self.details = list(details)
        self.method = method
        self.idempotency_key = idempotency_key
        self.field_violations: list[FieldViolation] = []
        self.error_info: error_details_pb2.ErrorInfo | None = None
        self.retry_delay: float | None = None
        for detail in self.details:
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad_request = error_details_pb2.BadRequest()
                detail.Unpack(bad_request)
                self.field_violations.extend(
                    # `reason` is newer than some google.rpc stubs, hence getattr.
                    FieldViolation(v.field, v.description, str(getattr(v, "reason", "")))
                    for v in bad_request.field_violations
                )
            elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR) and self.error_info is None:
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                self.error_info = info
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                retry = error_details_pb2.RetryInfo()
                detail.Unpack(retry)
                self.retry_delay = retry.retry_delay.ToTimedelta().total_seconds()
        super().__init__(self._text())

    @property
    def reason(self) -> str:
        """The ErrorInfo reason (e.g. `IDEMPOTENCY_KEY_REUSED`), or "" when the error carries none."""
        return self.error_info.reason if self.error_info else ""

    @property
    def domain(self) -> str:
        return self.error_info.domain if self.error_info else ""

    @property
    def outcome_unknown(self) -> bool:
        """True when the call may have applied (DEADLINE_EXCEEDED, INTERNAL, ...): retry with the same key."""
        return self.code in _UNKNOWN_OUTCOME

    def _text(self) -> str:
        # Like the CLI's: `CODE: message`, then each field violation, the reason, the key to retry with.
        lines = [f"{self.code.name}: {self.message}"]
        lines.extend(f"  {v.field}: {v.description}" for v in self.field_violations)
        if self.reason:
            lines.append(f"  reason: {self.reason}")
        if self.idempotency_key and self.outcome_unknown:
            lines.append(f"  the call may have applied: retry with idempotency_key={self.idempotency_key!r}")
        return "\n".join(lines)


class Cancelled(CourierError):
    code = grpc.StatusCode.CANCELLED


class Unknown(CourierError):
    code = grpc.StatusCode.UNKNOWN


class InvalidArgument(CourierError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceeded(CourierError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFound(CourierError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(CourierError):
    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(CourierError):
    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(CourierError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(CourierError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(CourierError):
    code = grpc.StatusCode.ABORTED


class OutOfRange(CourierError):
    code = grpc.StatusCode.OUT_OF_RANGE


class Unimplemented(CourierError):
    code = grpc.StatusCode.UNIMPLEMENTED


class Internal(CourierError):
    code = grpc.StatusCode.INTERNAL


class Unavailable(CourierError):
    code = grpc.StatusCode.UNAVAILABLE


class DataLoss(CourierError):
    code = grpc.StatusCode.DATA_LOSS


class Unauthenticated(CourierError):
    code = grpc.StatusCode.UNAUTHENTICATED


_BY_CODE: dict[grpc.StatusCode, type[CourierError]] = {
    cls.code: cls
    for cls in (
        Cancelled, Unknown, InvalidArgument, DeadlineExceeded, NotFound, AlreadyExists, PermissionDenied,
        ResourceExhausted, FailedPrecondition, Aborted, OutOfRange, Unimplemented, Internal, Unavailable,
        DataLoss, Unauthenticated,
    )
}
_BY_NUMBER: dict[int, grpc.StatusCode] = {code.value[0]: code for code in grpc.StatusCode}


class _Call(Protocol):
    """What a failed call offers, sync (grpc.RpcError + grpc.Call) and async (grpc.aio.AioRpcError) alike."""

    def code(self) -> grpc.StatusCode: ...

    def details(self) -> str | None: ...

    def trailing_metadata(self) -> object: ...


def _details_trailer(trailers: object) -> bytes | None:
    # Sync calls give a tuple of (key, value) pairs, grpc.aio a Metadata; both iterate as pairs.
    if not trailers:
        return None
    for key, value in trailers:  # type: ignore[attr-defined]
        if key == DETAILS_TRAILER and isinstance(value, bytes):
            return value
    return None


def from_rpc_error(error: grpc.RpcError, *, method: str = "", idempotency_key: str = "") -> CourierError:
    """The CourierError subclass for a failed call, with the details of its google.rpc.Status trailer."""
    call: _Call = error  # every RpcError grpcio raises is also a Call
    code = call.code() if hasattr(call, "code") else grpc.StatusCode.UNKNOWN
    message = (call.details() if hasattr(call, "details") else None) or ""
    details: list[any_pb2.Any] = []
    raw = _details_trailer(call.trailing_metadata()) if hasattr(call, "trailing_metadata") else None
    if raw is not None:
        status = status_pb2.Status.FromString(raw)
        # The trailer repeats the code and message; the call's own are authoritative (gRPC's rule), the trailer
        # adds the details.
        details = list(status.details)
    cls = _BY_CODE.get(code, CourierError)
    error_out = cls(message, code=code, details=details, method=method, idempotency_key=idempotency_key)
    error_out.__cause__ = error
    return error_out


def from_status(status: status_pb2.Status, *, method: str = "", idempotency_key: str = "") -> CourierError:
    """The CourierError of a google.rpc.Status sent as data (an AuthorizeStream answer, a BatchCapture failure)."""
    code = _BY_NUMBER.get(status.code, grpc.StatusCode.UNKNOWN)
    cls = _BY_CODE.get(code, CourierError)
    return cls(status.message, code=code, details=status.details, method=method, idempotency_key=idempotency_key)
