"""Errors of the chains package: one root, one leaf per class of provider failure.

The class decides what the RPC client does: shrink the range, back off, wait for the head, fail over, or stop.
Messages never carry a provider URL unredacted.
"""

from __future__ import annotations


class ChainError(Exception):
    """Root of every error raised by the chains package."""


class RpcError(ChainError):
    """A JSON-RPC call failed. `url` is already redacted."""

    def __init__(self, message: str, *, url: str = "", code: int | None = None) -> None:
        super().__init__(f"{message} [{url}]" if url else message)
        self.url = url
        self.code = code
        self.reason = message


class RangeTooLarge(RpcError):
    """eth_getLogs range or result too large. `suggested` is the provider's (from, to) hint, if it gave one."""

    def __init__(
        self, message: str, *, url: str = "", code: int | None = None, suggested: tuple[int, int] | None = None,
        max_range: int | None = None,
    ) -> None:
        super().__init__(message, url=url, code=code)
        self.suggested = suggested
        self.max_range = max_range


class RateLimited(RpcError):
    """HTTP 429 or a provider's rate/quota error: back off, then try (another URL)."""


class HeadNotReady(RpcError):
    """The node does not have the requested block yet: wait for the head; not the node's fault."""


class Transient(RpcError):
    """Timeouts, connection errors, 5xx, malformed replies: retry, fail over."""


class MalformedReply(Transient):
    """A reply that is not the JSON-RPC shape asked for (null id, missing or mistyped field, body not JSON): the
    node or something in front of it is broken, so retry and fail over like any transient fault."""


class Fatal(RpcError):
    """The request itself is wrong (method missing, bad params): retrying will not help."""


class HistoryUnavailable(RpcError):
    """The node does not keep the state asked for ("missing trie node", "historical state not available"): it is
    pruned, not broken. Asked of the next URL; when none has it, an archive node is needed."""


class WrongChain(Fatal):
    """A provider URL serves another chain than the configured chain id: it is refused (never indexed from)."""


class UnknownBlock(RpcError):
    """The node does not know a block hash we asked for: it was reorged away."""


class InconsistentReply(ChainError):
    """A reply failed a consistency check (hash mismatch, bloom says logs are missing, duplicate log index)."""


class ReorgTooDeep(ChainError):
    """A reorg reaches below the finality boundary; the chain is put in alert and stops advancing."""


class AllEndpointsFailed(ChainError):
    """Every RPC URL failed for the same request after bounded retries."""
