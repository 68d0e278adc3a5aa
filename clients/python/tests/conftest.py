"""The server under test: the real `courier up` binary (COURIER_BIN, default target/debug/courier), each on a
free port of 127.0.0.1 with its own data dir, started the way interop/python/interop_test.py starts it: wait for
its `courier: listening on ADDR` line, then for health SERVING (no sleeps)."""

from __future__ import annotations

import os
import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from courier_client import Client

ROOT = Path(__file__).resolve().parents[3]
READY_LINE = re.compile(r"^courier: listening on (\S+:\d+)$")
START_TIMEOUT = 60.0  # a debug build migrating a new database can be slow


class Server:
    """`courier up` as a child process; `address` once it listens, `data_dir` holds its token."""

    @staticmethod
    def binary() -> str:
        return os.environ.get("COURIER_BIN", str(ROOT / "target/debug/courier"))

    def __init__(self, data_dir: Path, config: str | None = None, listen: str = "127.0.0.1:0") -> None:
        binary = self.binary()
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.argv = [
            binary, "up", "--listen", listen, "--admin-listen", "127.0.0.1:0", "--data-dir", str(data_dir),
        ]
        if config is not None:
            path = data_dir.parent / "courier.toml"
            path.write_text(config)
            self.argv += ["--config", str(path)]
        self._stderr = open(data_dir.parent / "server.stderr", "wb")
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr
        )
        self.lines: list[str] = []
        self._address: str | None = None
        self._ready = threading.Event()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        # Drain stdout for the process's whole life, so that a chatty server never blocks on a full pipe.
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self.lines.append(line)
            match = READY_LINE.match(line)
            if match and self._address is None:
                self._address = match.group(1)
                self._ready.set()
        self._ready.set()

    @property
    def address(self) -> str:
        if not self._ready.wait(START_TIMEOUT) or self._address is None:
            raise AssertionError(f"`{' '.join(self.argv)}` never said it listens:\n" + "\n".join(self.lines))
        return self._address

    @property
    def token(self) -> str:
        return (self.data_dir / "token").read_text().strip()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`courier up` as a fresh clone runs it: plaintext, development auth (its token in the data dir)."""
    running = Server(tmp_path_factory.mktemp("courier") / "courier-data")
    try:
        with Client(running.address, data_dir=running.data_dir) as client:
            client.wait_ready(START_TIMEOUT)
        yield running
    finally:
        running.stop()


@pytest.fixture
def client(server: Server) -> Iterator[Client]:
    with Client(server.address, data_dir=server.data_dir) as c:
        yield c
