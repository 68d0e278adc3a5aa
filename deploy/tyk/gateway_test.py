#!/usr/bin/env python3
"""Plays a Tyk gateway against `courier serve tyk-plugin` (run it through run.sh).

Starts `$COURIER_BIN serve tyk-plugin` on a free loopback port with an HS256 secret as its `[auth]`, then sends
the coprocess.Object a Tyk gateway sends for a custom auth check (hook type CustomKeyCheck, the API's
auth_check name, the client's request headers) with:
  * a good token: the object comes back with the session filled in (subject, merchant, scopes as metadata) and
    metadata["token"] set, no return override;
  * an expired, a forged (another secret), a scope-less token and no token: a 401 or 403 override whose error
    names the reason;
  * an unknown hook name: UNIMPLEMENTED naming the hook served, and the plugin still answers afterwards;
  * DispatchEvent: acknowledged.
Then SIGTERM must stop the plugin with exit status 0.

Prints one line per check and `N passed, M failed`; exits 1 when any check failed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "generated"))

import grpc  # noqa: E402
import jwt  # noqa: E402

import coprocess_common_pb2 as common  # noqa: E402
import coprocess_mini_request_object_pb2 as mini  # noqa: E402
import coprocess_object_pb2 as obj  # noqa: E402
import coprocess_object_pb2_grpc as obj_grpc  # noqa: E402

SECRET = "tyk-plugin-test-secret-0123456789abcdef"
HOOK = "CourierAuth"
results: list[tuple[str, bool, str]] = []


def check(name: str, ok: bool, detail: str = "") -> None:
    results.append((name, ok, detail))
    print(f"{'ok  ' if ok else 'FAIL'} {name}{'' if ok else ': ' + detail}", flush=True)


def token(secret: str = SECRET, scope: str = "payments:authorize", ttl: int = 300, **claims) -> str:
    now = int(time.time())
    body = {"sub": "merchant_1", "scope": scope, "iat": now, "nbf": now - 5, "exp": now + ttl, **claims}
    return jwt.encode(body, secret, algorithm="HS256")


def auth_object(authorization: str | None, hook: str = HOOK) -> obj.Object:
    headers = {"Content-Type": "application/json", "X-Request-Id": "gw-1"}
    if authorization is not None:
        headers["Authorization"] = authorization
    return obj.Object(
        hook_type=common.CustomKeyCheck,
        hook_name=hook,
        request=mini.MiniRequestObject(
            headers=headers, method="POST", url="/payments/authorize", request_uri="/payments/authorize", scheme="https"
        ),
        spec={"APIID": "courier-payments", "OrgID": "org-1"},
    )


def start(data: Path) -> tuple[subprocess.Popen, str]:
    (data / "secret").write_text(SECRET)
    config = data / "plugin.toml"
    config.write_text(f'[auth]\nsecret_file = "{data / "secret"}"\n\n[tyk]\nauth_hook = "{HOOK}"\n')
    proc = subprocess.Popen(
        [os.environ["COURIER_BIN"], "serve", "tyk-plugin", "--listen", "127.0.0.1:0", "--config", str(config), "--log", "warn"],
        stdout=subprocess.PIPE,
        text=True,
    )
    for line in proc.stdout:
        if line.startswith("courier: listening on "):
            return proc, line.split()[-1]
    raise SystemExit(f"courier serve tyk-plugin exited with {proc.wait()} before listening")


def refused(reply: obj.Object, code: int, reason: str) -> tuple[bool, str]:
    overrides = reply.request.return_overrides
    error = json.loads(overrides.response_error or "{}").get("error", "")
    ok = overrides.response_code == code and reason in error and not reply.session.metadata
    return ok, f"code {overrides.response_code}, error {error!r}, session {dict(reply.session.metadata)}"


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        proc, addr = start(Path(tmp))
        try:
            channel = grpc.insecure_channel(addr)
            grpc.channel_ready_future(channel).result(timeout=10)
            gateway = obj_grpc.DispatcherStub(channel)

            good = token(merchant="m_42", scope="payments:authorize payments:read")
            reply = gateway.Dispatch(auth_object(f"Bearer {good}"), timeout=5)
            meta = dict(reply.session.metadata)
            check(
                "good token: session metadata has subject, merchant and scopes",
                meta == {
                    "courier_subject": "merchant_1",
                    "courier_merchant": "m_42",
                    "courier_scopes": "payments:authorize payments:read",
                },
                str(meta),
            )
            check(
                "good token: metadata[token] is the key Tyk keeps the session under, no override",
                reply.metadata.get("token") == good and reply.request.return_overrides.response_code == 0,
                f"{dict(reply.metadata)} {reply.request.return_overrides}",
            )
            check("good token: the request comes back as sent", reply.request.headers["X-Request-Id"] == "gw-1")

            without_merchant = gateway.Dispatch(auth_object(f"Bearer {token()}"), timeout=5)
            check(
                "a token without a merchant claim acts for its subject",
                without_merchant.session.metadata.get("courier_merchant") == "merchant_1",
                str(dict(without_merchant.session.metadata)),
            )

            for name, authorization, code, reason in [
                ("expired token: 401", f"Bearer {token(ttl=-3600)}", 401, "token expired"),
                ("forged token (another secret): 401", f"Bearer {token(secret='not-the-secret-0123456789abcdef')}", 401,
                 "signature is invalid"),
                ("scope-less token: 403", f"Bearer {token(scope='')}", 403, "lacks scope payments:authorize"),
                ("no Authorization header: 401", None, 401, "missing bearer token"),
                ("not a bearer token: 401", "Basic dXNlcjpwYXNz", 401, "malformed bearer token"),
            ]:
                ok, detail = refused(gateway.Dispatch(auth_object(authorization), timeout=5), code, reason)
                check(name, ok, detail)

            try:
                gateway.Dispatch(auth_object(f"Bearer {good}", hook="SomethingElse"), timeout=5)
                check("unknown hook: UNIMPLEMENTED", False, "answered")
            except grpc.RpcError as error:
                check(
                    "unknown hook: UNIMPLEMENTED naming the hook asked for and the one served",
                    error.code() == grpc.StatusCode.UNIMPLEMENTED
                    and "SomethingElse" in error.details() and HOOK in error.details(),
                    f"{error.code()} {error.details()}",
                )
            again = gateway.Dispatch(auth_object(f"Bearer {good}"), timeout=5)
            check("after an unknown hook the plugin still answers", bool(again.session.metadata))

            gateway.DispatchEvent(obj.Event(payload=json.dumps({"event": "RateLimitExceeded"})), timeout=5)
            check("DispatchEvent is acknowledged", True)
            channel.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            status = proc.wait(timeout=30)
        check("SIGTERM stops the plugin with exit status 0", status == 0, f"exit {status}")

    failed = sum(1 for _, ok, _ in results if not ok)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
