"""What both clients share: where the server is, the token, TLS, the channel options with the retry policy."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import grpc

from .retry import RetryPolicy, service_config

# `courier up`'s defaults: it listens on 127.0.0.1:50051 without TLS and writes a development token (every
# scope, 30 days) to ./courier-data/token, where the CLI finds it too.
DEFAULT_TARGET = "127.0.0.1:50051"
DEFAULT_DATA_DIR = "courier-data"
TOKEN_FILE = "token"
# The CLI's default deadline per call.
DEFAULT_TIMEOUT = 10.0

PathOrPem = Union[str, "os.PathLike[str]", bytes]
ChannelOptions = Sequence[tuple[str, Union[str, int]]]


def resolve_token(token: str | None, data_dir: str | os.PathLike[str] | None) -> str | None:
    """The token to send, found the way the CLI finds it: the argument, else $COURIER_TOKEN, else the token file
    in the data dir (the argument, else $COURIER_DATA_DIR, else ./courier-data), else none (a server without
    `[auth]`, or `courier up --no-auth`, needs none)."""
    if token is None:
        token = os.environ.get("COURIER_TOKEN")
    if token is None:
        directory = Path(data_dir if data_dir is not None else os.environ.get("COURIER_DATA_DIR", DEFAULT_DATA_DIR))
        try:
            token = (directory / TOKEN_FILE).read_text()
        except OSError:
            return None
    token = token.strip()
    return token or None


def _pem(value: PathOrPem | None) -> bytes | None:
    """PEM bytes as given, or read from a path."""
    if value is None or isinstance(value, bytes):
        return value
    return Path(value).read_bytes()


@dataclass(frozen=True)
class Target:
    address: str
    tls: bool


def parse_target(target: str | None, tls: bool | None) -> Target:
    """`host:port`, or the CLI's `http://host:port` / `https://host:port` (from $COURIER_SERVER_URL too)."""
    target = target or os.environ.get("COURIER_SERVER_URL") or DEFAULT_TARGET
    scheme_tls: bool | None = None
    for scheme, is_tls in (("https://", True), ("http://", False)):
        if target.startswith(scheme):
            target, scheme_tls = target[len(scheme):].rstrip("/"), is_tls
    if tls is not None and scheme_tls is not None and tls != scheme_tls:
        raise ValueError(f"tls={tls} contradicts the scheme of the target {target!r}")
    return Target(target, tls if tls is not None else bool(scheme_tls))


@dataclass(frozen=True)
class ChannelConfig:
    """Everything a channel is made of; `Client` and `AsyncClient` open theirs from one."""

    target: Target
    credentials: grpc.ChannelCredentials | None
    options: list[tuple[str, str | int]]
    metadata: tuple[tuple[str, str], ...]


def channel_config(
    target: str | None,
    *,
    token: str | None,
    data_dir: str | os.PathLike[str] | None,
    tls: bool | None,
    ca: PathOrPem | None,
    cert: PathOrPem | None,
    key: PathOrPem | None,
    server_name: str | None,
    retry: RetryPolicy | None,
    options: ChannelOptions,
) -> ChannelConfig:
    ca = ca if ca is not None else os.environ.get("COURIER_CA")
    cert = cert if cert is not None else os.environ.get("COURIER_CERT")
    key = key if key is not None else os.environ.get("COURIER_KEY")
    # A CA (or a client certificate) implies TLS, as the CLI's --ca does.
    if tls is None and (ca is not None or cert is not None) and not (target or "").startswith("http://"):
        tls = True
    where = parse_target(target, tls)
    if (cert is None) != (key is None):
        raise ValueError("a client certificate (mTLS) needs both cert and key")
    credentials = None
    if where.tls:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=_pem(ca), private_key=_pem(key), certificate_chain=_pem(cert)
        )
    elif cert is not None:
        raise ValueError("cert and key are for a TLS server: give an https:// target or tls=True")
    channel_options: list[tuple[str, str | int]] = [
        # The service config carries the retry policy (gRFC A6), applied by gRPC itself; none disables retries.
        ("grpc.service_config", json.dumps(service_config(retry))),
        ("grpc.enable_retries", 1 if retry is not None else 0),
    ]
    if server_name:
        channel_options.append(("grpc.ssl_target_name_override", server_name))
    channel_options.extend(options)
    # The token goes as metadata on each call rather than as call credentials: gRPC sends call credentials over
    # TLS only, and `courier up` serves plaintext on loopback by default.
    resolved = resolve_token(token, data_dir)
    metadata = (("authorization", f"Bearer {resolved}"),) if resolved else ()
    return ChannelConfig(where, credentials, channel_options, metadata)
