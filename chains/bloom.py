"""logsBloom membership tests (Ethereum yellow paper, section 4.3.1): 2048-bit filter, 3 bits per item."""

from __future__ import annotations

from eth_utils import keccak


def bloom_bits(item: bytes) -> tuple[int, int, int]:
    digest = keccak(item)
    return tuple(((digest[i] << 8) | digest[i + 1]) & 2047 for i in (0, 2, 4))  # type: ignore[return-value]


def bloom_contains(bloom_hex: str, item_hex: str) -> bool:
    """True when `item_hex` (an address or 32-byte topic, 0x-hex) may be in the bloom; False means surely not."""
    bloom = int(bloom_hex, 16)
    return all(bloom >> bit & 1 for bit in bloom_bits(bytes.fromhex(item_hex[2:])))
