"""The examples run as printed, as their own processes, against the test server (found through the
environment variables the CLI reads too)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .conftest import Server

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_quickstart(server: Server, tmp_path: Path) -> None:
    env = dict(os.environ, COURIER_SERVER_URL=f"http://{server.address}", COURIER_DATA_DIR=str(server.data_dir))
    env.pop("COURIER_TOKEN", None)
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py")], env=env, cwd=tmp_path, capture_output=True, text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "authorize 25.00: DECISION_APPROVED (code 00)" in out and "captured 25.00" in out
    assert "DECLINE_REASON_INSUFFICIENT_FUNDS" in out and "FAILED_PRECONDITION ALREADY_CAPTURED" in out
    assert "posted 75.00, available 75.00" in out
