"""A local anvil node for tests, the demo and benchmarks: process lifecycle and a synchronous JSON-RPC client.

Units: ETH amounts in wei, gas in gas units, block numbers as ints, times in seconds.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, cast

import httpx

from chains.devnet import BlockRef, DevnetError, to_block_param, tx_request

REPO_ROOT = Path(__file__).resolve().parents[2]
_ANVIL_REL = Path("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")
_START_TIMEOUT_S = 15.0
_STOP_TIMEOUT_S = 5.0
_RECEIPT_TIMEOUT_S = 30.0


def anvil_binary(root: Path = REPO_ROOT) -> Path:
    """Path of the pinned anvil binary installed by npm (package @foundry-rs/anvil)."""
    path = root / _ANVIL_REL
    if not path.is_file():
        raise DevnetError(f"anvil binary not found at {path}; run `npm ci` in {root} to install it")
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Anvil:
    """One anvil process (`--hardfork cancun`) on 127.0.0.1 and a persistent JSON-RPC client to it.

    Use as a context manager, or call `start()` / `stop()`. `block_time` is in seconds (None: automine),
    `gas_limit` in gas units (anvil's default block gas limit is 30,000,000). `state_file`, if given, is
    loaded when it exists and dumped on stop. `log_file` receives anvil's output (default: discarded).
    """

    def __init__(
        self, chain_id: int, *, port: int | None = None, slots_in_an_epoch: int = 32,
        block_time: float | None = None, gas_limit: int | None = None, extra_args: Sequence[str] = (),
        state_file: Path | None = None, log_file: Path | None = None, root: Path = REPO_ROOT,
        own_session: bool = False,
    ) -> None:
        self.chain_id = chain_id
        self.port = port if port is not None else free_port()
        self.slots_in_an_epoch = slots_in_an_epoch
        self.block_time = block_time
        self.gas_limit = gas_limit
        self.extra_args = tuple(extra_args)
        self.state_file = state_file
        self.log_file = log_file
        self.root = root
        # own_session: a terminal's Ctrl-C (sent to the whole process group) does not reach anvil, so its owner
        # can stop its own users of the node first and then stop anvil itself
        self.own_session = own_session
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._client: httpx.Client | None = None
        self._next_id = 0
        self._accounts: list[str] = []

    @property
    def url(self) -> str:
        """HTTP JSON-RPC endpoint, e.g. http://127.0.0.1:8545."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """Process id of the running anvil, None when not running."""
        return self._proc.pid if self._proc is not None else None

    def command(self) -> list[str]:
        """The argv `start()` runs."""
        args = [str(anvil_binary(self.root)), "--hardfork", "cancun", "--chain-id", str(self.chain_id),
                "--port", str(self.port), "--host", "127.0.0.1", "--slots-in-an-epoch",
                str(self.slots_in_an_epoch), "--silent"]
        if self.block_time is not None:
            args += ["--block-time", repr(self.block_time)]
        if self.gas_limit is not None:
            args += ["--gas-limit", str(self.gas_limit)]
        if self.state_file is not None and self.state_file.exists():
            args += ["--load-state", str(self.state_file)]
        if self.state_file is not None:
            args += ["--dump-state", str(self.state_file)]
        return args + list(self.extra_args)

    def start(self) -> Anvil:
        """Spawn anvil; wait (at most 15 s) until `eth_chainId` answers with `chain_id`. No-op if running."""
        if self._proc is not None:
            return self
        cmd = self.command()
        self._log = self.log_file.open("ab") if self.log_file is not None else None
        sink: IO[bytes] | int = self._log if self._log is not None else subprocess.DEVNULL
        self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink,
                                      start_new_session=self.own_session)
        deadline = time.monotonic() + _START_TIMEOUT_S
        while (code := self._proc.poll()) is None:
            try:
                answered = int(self.rpc("eth_chainId"), 16)
                break
            except DevnetError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise DevnetError(f"anvil did not answer on {self.url} in {_START_TIMEOUT_S} s") from None
                time.sleep(0.05)
        else:
            self.stop()
            raise DevnetError(f"anvil exited with code {code} at start-up (see log_file): {' '.join(cmd)}")
        if answered != self.chain_id:
            self.stop()
            raise DevnetError(f"anvil on {self.url} answered chain id {answered}, expected {self.chain_id}")
        self._accounts = list(self.rpc("eth_accounts"))
        return self

    def stop(self) -> None:
        """Stop anvil: SIGTERM (anvil still writes --dump-state), SIGKILL after 5 s. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for closable in (self._client, self._log):
            if closable is not None:
                closable.close()
        self._client, self._log = None, None

    def __enter__(self) -> Anvil:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def rpc(self, method: str, params: list[Any] | None = None) -> Any:
        """One synchronous JSON-RPC call: returns `result`; raises DevnetError with the node's message."""
        if self._client is None:
            self._client = httpx.Client(timeout=httpx.Timeout(60.0, connect=2.0))
        self._next_id += 1
        body = {"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": params or []}
        try:
            resp = self._client.post(self.url, json=body)
            resp.raise_for_status()
            reply = resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise DevnetError(f"{method}: {type(exc).__name__}: {exc}") from exc
        if (err := reply.get("error")) is not None:
            raise DevnetError(f"{method}: {err.get('message')}", code=err.get("code"), data=err.get("data"))
        return reply.get("result")

    @property
    def accounts(self) -> list[str]:
        """The 10 funded, unlocked dev accounts (lowercase hex), as eth_accounts listed them at start; later
        impersonations, which anvil adds to eth_accounts, are not included."""
        return list(self._accounts or self.rpc("eth_accounts"))

    def block_number(self) -> int:
        """Height of the latest block."""
        return int(self.rpc("eth_blockNumber"), 16)

    def get_block(self, number_or_tag: BlockRef = "latest", *, full: bool = False) -> dict[str, Any]:
        """eth_getBlockByNumber; raises DevnetError if the node has no such block."""
        block: dict[str, Any] | None = self.rpc("eth_getBlockByNumber", [to_block_param(number_or_tag), full])
        if block is None:
            raise DevnetError(f"no block {number_or_tag!r}")
        return block

    def get_logs(self, filter: Mapping[str, Any]) -> list[dict[str, Any]]:
        """eth_getLogs; int fromBlock/toBlock are converted to hex."""
        params = {k: to_block_param(v) if k in ("fromBlock", "toBlock") else v for k, v in filter.items()}
        return cast("list[dict[str, Any]]", self.rpc("eth_getLogs", [params]))

    def get_balance(self, address: str, block: BlockRef = "latest") -> int:
        """ETH balance in wei."""
        return int(self.rpc("eth_getBalance", [address, to_block_param(block)]), 16)

    def call(self, to: str, data: str, *, frm: str | None = None, block: BlockRef = "latest") -> str:
        """eth_call; returns the raw return data as 0x-hex ("0x" when the function returns nothing)."""
        req = {"to": to, "data": data} | ({"from": frm} if frm is not None else {})
        return str(self.rpc("eth_call", [req, to_block_param(block)]))

    def mine(self, n: int = 1) -> None:
        """Mine `n` blocks now (anvil_mine), whatever the mining mode."""
        self.rpc("anvil_mine", [hex(n)])

    def snapshot(self) -> str:
        """evm_snapshot; returns the snapshot id (hex string) for `revert`."""
        return str(self.rpc("evm_snapshot"))

    def revert(self, snapshot_id: str) -> bool:
        """evm_revert to a snapshot (which is consumed); True if it existed."""
        return bool(self.rpc("evm_revert", [snapshot_id]))

    def reorg(self, depth: int, txs: Sequence[tuple[Mapping[str, Any] | str, int]] = ()) -> None:
        """Replace the last `depth` blocks with `depth` new ones (anvil_reorg); the head height is unchanged.

        `txs` are (transaction, block_offset) pairs put into the new blocks. A transaction is a request dict
        (anvil fills nonce/gas and signs it for an unlocked or impersonated `from`; its hash is new) or a
        signed raw transaction as 0x-hex (see `raw_transaction`; it keeps its hash). `block_offset` counts
        from the first replaced block: 0 <= block_offset < depth; offset 0 lands at height head - depth + 1.
        Txs of the replaced blocks that are not listed are dropped (not returned to the pool).
        Wire format (anvil 1.7): params = [depth, [[tx, block_offset], ...]].
        """
        pairs: list[list[Any]] = []
        for tx, offset in txs:
            if not 0 <= offset < depth:
                raise DevnetError(f"reorg block_offset {offset} outside [0, {depth - 1}]")
            pairs.append([tx if isinstance(tx, str) else tx_request(tx), offset])
        self.rpc("anvil_reorg", [depth, pairs])

    def rollback(self, n: int = 1) -> None:
        """Drop the last `n` blocks (anvil_rollback); the head height decreases by `n`."""
        self.rpc("anvil_rollback", [n])

    def set_automine(self, enabled: bool) -> None:
        self.rpc("evm_setAutomine", [enabled])

    def impersonate(self, address: str) -> None:
        """Let eth_sendTransaction send from `address` without its key (anvil_impersonateAccount)."""
        self.rpc("anvil_impersonateAccount", [address])

    def set_balance(self, address: str, wei: int) -> None:
        """Set the ETH balance of `address` to `wei`."""
        self.rpc("anvil_setBalance", [address, hex(wei)])

    @contextmanager
    def in_one_block(self) -> Iterator[Anvil]:
        """Same as `batch_block(self)`."""
        with batch_block(self):
            yield self

    def send_tx(
        self, frm: str, to: str | None, data: str, *, wait: bool = True, value: int = 0,
        gas: int | None = None,
    ) -> str:
        """eth_sendTransaction from an unlocked or impersonated `frm` (`to` None: contract creation).

        `value` is in wei, `gas` in gas units. With gas None, eth_estimateGas runs first (against the latest
        mined state) and a revert raises DevnetError with the reason, even with wait=False. With `wait`, polls
        for the receipt and raises DevnetError unless status is 1. Returns the tx hash.
        """
        req = tx_request({"from": frm, "data": data, "value": value} | ({"to": to} if to is not None else {}))
        req["gas"] = hex(gas) if gas is not None else self.rpc("eth_estimateGas", [req])
        tx_hash: str = self.rpc("eth_sendTransaction", [req])
        if wait:
            receipt = self.wait_for_receipt(tx_hash)
            if int(receipt["status"], 16) != 1:
                raise DevnetError(f"transaction {tx_hash} reverted (block {int(receipt['blockNumber'], 16)})")
        return tx_hash

    def receipt(self, tx_hash: str) -> dict[str, Any] | None:
        """eth_getTransactionReceipt; None while the tx is pending or unknown."""
        return cast("dict[str, Any] | None", self.rpc("eth_getTransactionReceipt", [tx_hash]))

    def wait_for_receipt(self, tx_hash: str, timeout: float = _RECEIPT_TIMEOUT_S) -> dict[str, Any]:
        """Poll for a receipt for at most `timeout` seconds (does not mine: with automine off, mine first)."""
        deadline = time.monotonic() + timeout
        while (receipt := self.receipt(tx_hash)) is None:
            if time.monotonic() > deadline:
                raise DevnetError(f"no receipt for {tx_hash} after {timeout} s (is automine off?)")
            time.sleep(0.02)
        return receipt

    def raw_transaction(self, tx_hash: str) -> str:
        """The signed transaction bytes (0x-hex) of a known tx, e.g. to re-include it via `reorg`."""
        raw: str | None = self.rpc("eth_getRawTransactionByHash", [tx_hash])
        if raw is None:
            raise DevnetError(f"unknown transaction {tx_hash}")
        return raw


@contextmanager
def batch_block(anvil: Anvil) -> Iterator[Anvil]:
    """Put every transaction sent inside the `with` body into ONE block: automine off, body, one evm_mine,
    automine back on (also when the body raises).

    Inside, send with `wait=False` (a waiting send would time out: nothing is mined) and check `receipt()`
    after the block. Gas estimates run against the latest MINED state: pass an explicit `gas` to a transaction
    that depends on another pending one. Transactions beyond the block gas limit stay pending.
    """
    anvil.set_automine(False)
    try:
        yield anvil
    finally:
        try:
            anvil.rpc("evm_mine")
        finally:
            anvil.set_automine(True)
