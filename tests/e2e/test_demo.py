"""End to end: `python -m app.demo` serves live data from two anvils and stops cleanly on SIGINT or SIGTERM,
leaving no anvil behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from chains.devnet import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


def _anvil_alive(pid: int) -> bool:
    """True while `pid` is an anvil that has not been reaped (a zombie counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"anvil" in cmdline and "\nState:\tZ" not in status


def _poll(what: str, timeout: float, probe: Callable[[], Any], proc: subprocess.Popen[bytes],
          log: Path) -> Any:
    """Call `probe` until it returns something truthy; fail early if the demo exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"demo exited with {proc.returncode} while waiting for {what}:\n{log.read_text()}")
        try:
            if result := probe():
                return result
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"no {what} after {timeout} s:\n{log.read_text()}")


@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_demo_serves_live_data_and_stops_cleanly(tmp_path: Path, stop_signal: signal.Signals) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SETTLE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.demo", "--port", str(port), "--exit-after", "60"],
            cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    anvil_pids: list[int] = []
    try:
        with httpx.Client(base_url=base, timeout=5.0) as client:
            health = _poll("/v1/health", START_TIMEOUT_S,
                           lambda: client.get("/v1/health").status_code in (200, 503), proc, log)
            assert health
            anvil_pids = [int(p) for p in re.findall(r"anvil pid (\d+)", log.read_text())]
            keys = re.findall(r"API key\s+(stk_\S+)", log.read_text())
            assert len(keys) == 1, log.read_text()
            assert client.get("/v1/chains").status_code == 401  # the demo's API wants its key too
            client.headers["Authorization"] = f"Bearer {keys[0]}"
            assert len(anvil_pids) == 2, log.read_text()
            assert all(_anvil_alive(pid) for pid in anvil_pids)

            chains = client.get("/v1/chains").json()
            assert {c["name"]: c["chain_id"] for c in chains} == {"devnet-a": 31337, "devnet-b": 31338}

            def finalized_page() -> list[dict[str, Any]] | None:
                page = client.get("/v1/transfers", params={"chain": "devnet-a"}).json()
                items: list[dict[str, Any]] = page["items"]
                symbols = {i["token"]["symbol"] for i in items}
                finalized = any(i["state"] == "finalized" for i in items)
                return items if finalized and symbols >= {"USDC", "USDT", "DAI"} else None  # indexing may be partial

            items = _poll("finalized transfers of all three tokens on devnet-a", 30.0, finalized_page, proc, log)
            for item in items:
                assert item["chain"] == "devnet-a"
                assert isinstance(item["amount"], str) and isinstance(item["amount_base_units"], str)
                base_units = Decimal(item["amount_base_units"])
                assert Decimal(item["amount"]) == base_units.scaleb(-item["token"]["decimals"])
            assert {i["token"]["symbol"] for i in items} >= {"USDC", "USDT", "DAI"}
            assert (tmp_path / ".settle" / "demo" / "settle.toml").is_file()
            assert (tmp_path / ".settle" / "demo" / "settle.db").is_file()

            # live traffic: the background deposits keep adding transfers
            def count() -> int:
                return len(client.get("/v1/transfers", params={"limit": 1000}).json()["items"])

            before = count()
            _poll("a new transfer from the live traffic", 20.0, lambda: count() > before, proc, log)

        proc.send_signal(stop_signal)
        try:
            code = proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"demo still running {STOP_TIMEOUT_S} s after {stop_signal.name}:\n{log.read_text()}")
        output = log.read_text()
        assert code == 0, output
        assert "Traceback" not in output, output
        assert "database is locked" not in output and " in a row, " not in output, output  # no loop failed
        assert "demo: stopped" in output
        assert not [pid for pid in anvil_pids if _anvil_alive(pid)], "anvil left running"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in anvil_pids:
            if _anvil_alive(pid):
                os.kill(pid, signal.SIGKILL)
