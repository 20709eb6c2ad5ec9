"""EVM addresses: validated and checksummed once, at the boundary.

Inside the system an `Address` is always the EIP-55 checksummed form, so two spellings of one address compare
equal. Mixed-case input must carry a valid checksum (a wrong one is usually a typo, and money sent to a typo is
gone); all-lowercase or all-uppercase input is accepted as unchecksummed.
"""

from __future__ import annotations

import re
from typing import NewType

from eth_utils import keccak

from wallets.errors import InvalidAddress

Address = NewType("Address", str)

_HEX40 = re.compile(r"^0x[0-9a-fA-F]{40}$")
ZERO_ADDRESS = Address("0x0000000000000000000000000000000000000000")


def _checksum_lower(lower_hex40: str) -> str:
    digest = keccak(text=lower_hex40).hex()
    return "0x" + "".join(
        c.upper() if c.isalpha() and int(digest[i], 16) >= 8 else c for i, c in enumerate(lower_hex40)
    )


def to_checksum(value: object) -> Address:
    """Return the EIP-55 form of `value`.

    Raises InvalidAddress when `value` is not a 0x-prefixed 40-hex-digit string, or is mixed-case with a
    checksum that does not verify.
    """
    if not isinstance(value, str) or not _HEX40.match(value):
        raise InvalidAddress(f"not a 0x-prefixed 20-byte hex address: {value!r}")
    body = value[2:]
    checksummed = _checksum_lower(body.lower())
    if body != body.lower() and body != body.upper() and value != checksummed:
        raise InvalidAddress(f"bad EIP-55 checksum in {value!r} (did you mean {checksummed}?)")
    return Address(checksummed)


def is_zero_address(address: str) -> bool:
    return address.lower() == ZERO_ADDRESS


def address_to_topic(address: str) -> str:
    """The 32-byte log topic that encodes `address` (lowercase hex, left-padded with zeros)."""
    return "0x" + "0" * 24 + address[2:].lower()


def topic_to_address(topic: str) -> Address:
    """The checksummed address held in the low 20 bytes of a 32-byte topic (no validation: hot path)."""
    return Address(_checksum_lower(topic[-40:].lower()))
