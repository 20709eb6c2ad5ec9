"""Provider errors are classified by message text; URLs never leak credentials."""

from __future__ import annotations

import pytest

from chains.classify import classify_rpc_error
from chains.errors import Fatal, HeadNotReady, HistoryUnavailable, RangeTooLarge, RateLimited, Transient, UnknownBlock
from chains.redaction import redact_url, scrub


@pytest.mark.parametrize(
    ("code", "message", "kind", "suggested", "max_range"),
    [
        (-32005, "query returned more than 10000 results. Try with this block range [0x10, 0x1F].", RangeTooLarge,
         (16, 31), None),
        (-32602, "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range and no "
         "limit on the response size, or you can request any block range with a cap of 10K logs in the response. "
         "Based on your parameters and the response size limit, this block range should work: [0x1, 0x64]",
         RangeTooLarge, (1, 100), 2000),
        (-32600, "Under the Free tier plan, you can make eth_getLogs requests with up to a 10 block range. Based on "
         "your parameters, this block range should work: [0x5, 0xe]", RangeTooLarge, (5, 14), 10),
        (-32602, "query exceeds max results 20000, retry with the range 100-150", RangeTooLarge, (100, 150), None),
        (-32602, "query exceeds max block range 100000", RangeTooLarge, None, 100000),
        (None, "eth_getLogs is limited to a 10,000 range", RangeTooLarge, None, 10000),
        (-32600, "block range is too wide", RangeTooLarge, None, None),
        (-32000, "logs matched by query exceeds limit of 10000", RangeTooLarge, None, None),
        (None, "block range too large", RangeTooLarge, None, None),
        (None, "backend response too large", RangeTooLarge, None, None),
        (-32602, "eth_getLogs is limited to 1024 block range", RangeTooLarge, None, 1024),
        (-32005, "please limit the query to at most 1000 blocks", RangeTooLarge, None, 1000),
        (None, "query returned more than 10000 results", RangeTooLarge, None, None),
        (-32014, "too many RPC calls in batch request", RateLimited, None, None),
        (-32005, "daily request count exceeded, request rate limited", RateLimited, None, None),
        (429, "Too Many Requests", RateLimited, None, None),
        (-32000, "upstream does not have the requested block yet", HeadNotReady, None, None),
        (-32000, "block range extends beyond current head block", HeadNotReady, None, None),
        (-32000, "after last accepted block", HeadNotReady, None, None),
        (-32000, "unknown block", UnknownBlock, None, None),
        (-32601, "the method eth_getLogs does not exist/is not available", Fatal, None, None),
        (3, "execution reverted", Fatal, None, None),
        (-32000, "missing trie node 4a3b (path ) state 0x4a3b is not available", HistoryUnavailable, None, None),
        (-32000, "historical state not available in path scheme yet", HistoryUnavailable, None, None),
        (-32603, "internal error", Transient, None, None),
    ],
)
def test_provider_messages_are_classified(code, message, kind, suggested, max_range) -> None:  # type: ignore[no-untyped-def]
    err = classify_rpc_error(code, message)
    assert type(err) is kind
    if kind is RangeTooLarge:
        assert err.suggested == suggested and err.max_range == max_range


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("https://mainnet.infura.io/v3/0123456789abcdef0123456789abcdef", "https://mainnet.infura.io/v3/***"),
        ("https://eth-mainnet.g.alchemy.com/v2/AbCdEfGhIjKlMnOpQrStUv", "https://eth-mainnet.g.alchemy.com/v2/***"),
        ("https://rpc.ankr.com/eth?apikey=secret123", "https://rpc.ankr.com/eth?apikey=***"),
        ("https://user:pass@node.example:8545/", "https://***@node.example:8545/"),
        ("http://127.0.0.1:8545", "http://127.0.0.1:8545"),
    ],
)
def test_urls_are_redacted(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


@pytest.mark.parametrize(
    ("url", "redacted", "secrets"),
    [  # secrets shorter than 16 characters: in a path segment, a query value, a bare query, user info
        ("https://example.quiknode.pro/abc123/", "https://example.quiknode.pro/***/", ["abc123"]),
        ("https://eth-mainnet.g.alchemy.com/v2/k3y", "https://eth-mainnet.g.alchemy.com/v2/***", ["k3y"]),
        ("https://rpc.ankr.com/eth/abcd", "https://rpc.ankr.com/eth/***", ["abcd"]),
        ("https://node.example/rpc/MySecret", "https://node.example/rpc/***", ["MySecret"]),
        ("https://eth-mainnet.blastapi.io/1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901",
         "https://eth-mainnet.blastapi.io/***", ["1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901"]),
        ("https://node.example/rpc?s3cr3t", "https://node.example/rpc?***", ["s3cr3t"]),
        ("https://node.example/?a=1&key=xy", "https://node.example/?a=***&key=***", ["xy"]),
        ("https://tok@node.example/", "https://***@node.example/", ["tok"]),
        ("https://u:pw@node.example:8545/eth", "https://***@node.example:8545/eth", ["pw"]),
        ("https://arbitrum-mainnet.infura.io/v3/short", "https://arbitrum-mainnet.infura.io/v3/***", ["short"]),
    ],
)
def test_secrets_of_any_length_are_redacted_from_urls_and_text(url: str, redacted: str, secrets: list[str]) -> None:
    assert redact_url(url) == redacted
    text = scrub(f"POST {url} failed; retrying {url} (key {secrets[-1]})", [url])
    assert text == f"POST {redacted} failed; retrying {redacted} (key ***)" or len(secrets[-1]) < 4
    assert all(s not in text.replace(redacted, "") for s in secrets if len(s) >= 4)
    assert url not in text and text.count(redacted) == 2


def test_scrub_removes_secrets_even_out_of_their_url() -> None:
    url = "https://mainnet.infura.io/v3/0123456789abcdef0123456789abcdef"
    text = f"failed: {url} and key 0123456789abcdef0123456789abcdef again"
    assert "0123456789abcdef" not in scrub(text, [url])
