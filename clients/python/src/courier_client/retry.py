"""Retries by gRPC's own machinery (gRFC A6), configured through the channel's service config.

The policy is the server's: courier_kit's `RetryPolicy` defaults (3 attempts, 10 ms initial backoff growing by
2 to 200 ms, UNAVAILABLE only, which means the request was not processed) and its throttle (10 tokens, 0.1 back
per success), applied to idempotent methods only (courier_kit retries only methods marked `idempotent`).
Idempotent here means safe to run twice:

* the reads: GetUser, ListUsers, GetAccount, GetAuthorization, ListAuthorizations, WatchEvents, health Check;
* the money-moving calls that carry an idempotency key: CreditAccount, Authorize, Capture, Void. The clients fix
  the key before the first attempt, so every attempt sends the same one and the server applies the operation at
  most once (docs/errors.md: a retry with the same key replays the stored answer).

Never retried: CreateUser and OpenAccount (no key: a retry after a lost answer would create a second one), the
status updates, and the client-streaming AuthorizeStream and BatchCapture (each message has its own key, but
a stream half sent is not something to replay whole).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

USERS = "courier.users.v1.UserService"
PAYMENTS = "courier.payments.v1.PaymentService"
HEALTH = "grpc.health.v1.Health"

IDEMPOTENT_METHODS: tuple[tuple[str, str], ...] = (
    (USERS, "GetUser"),
    (USERS, "ListUsers"),
    (PAYMENTS, "GetAccount"),
    (PAYMENTS, "GetAuthorization"),
    (PAYMENTS, "ListAuthorizations"),
    (PAYMENTS, "WatchEvents"),
    (PAYMENTS, "CreditAccount"),
    (PAYMENTS, "Authorize"),
    (PAYMENTS, "Capture"),
    (PAYMENTS, "Void"),
    (HEALTH, "Check"),
)


@dataclass(frozen=True)
class RetryPolicy:
    """An A6 retryPolicy. gRPC caps max_attempts at 5."""

    max_attempts: int = 3
    initial_backoff: float = 0.01
    max_backoff: float = 0.2
    backoff_multiplier: float = 2.0
    retryable_status_codes: tuple[str, ...] = ("UNAVAILABLE",)
    # retryThrottling: the token bucket per channel.
    max_tokens: int = 10
    token_ratio: float = 0.1
    methods: tuple[tuple[str, str], ...] = field(default=IDEMPOTENT_METHODS)


def service_config(policy: RetryPolicy | None) -> dict[str, Any]:
    """The service config JSON (as a dict) for `policy`; without one, an empty config (no retries)."""
    if policy is None:
        return {}
    return {
        "methodConfig": [
            {
                "name": [{"service": service, "method": method} for service, method in policy.methods],
                "retryPolicy": {
                    "maxAttempts": policy.max_attempts,
                    "initialBackoff": f"{policy.initial_backoff}s",
                    "maxBackoff": f"{policy.max_backoff}s",
                    "backoffMultiplier": policy.backoff_multiplier,
                    "retryableStatusCodes": list(policy.retryable_status_codes),
                },
            }
        ],
        "retryThrottling": {"maxTokens": policy.max_tokens, "tokenRatio": policy.token_ratio},
    }
