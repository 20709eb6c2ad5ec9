"""Exact conversions between base units (int) and decimal strings in token units. Never floats."""

from __future__ import annotations

import re

MAX_UINT256 = 2**256 - 1


def format_units(base_units: int, decimals: int) -> str:
    """`format_units(1500000, 6) == "1.5"`; exact for any int; no exponent, no trailing zeros, "0" for zero."""
    sign = "-" if base_units < 0 else ""
    digits = str(abs(base_units))
    if decimals == 0:
        return sign + digits
    digits = digits.rjust(decimals + 1, "0")
    whole, frac = digits[:-decimals], digits[-decimals:].rstrip("0")
    return f"{sign}{whole}.{frac}" if frac else f"{sign}{whole}"


_DIGITS = re.compile(r"[0-9]+")  # ASCII only: int() and str.isdigit() also take "²", "١٢" and full-width digits


def is_digits(text: object) -> bool:
    """A non-empty string of ASCII digits 0-9, nothing else."""
    return isinstance(text, str) and _DIGITS.fullmatch(text) is not None


def parse_units(text: str, decimals: int) -> int:
    """`parse_units("1.5", 6) == 1500000`. Raises ValueError on more decimals than the token has, signs,
    exponents, digits other than ASCII 0-9, or values above 2**256-1."""
    if not isinstance(text, str) or not text or text.strip() != text:
        raise ValueError("must be a decimal string such as \"12.5\"")
    whole, _, frac = text.partition(".")
    if not is_digits(whole) or (frac and not is_digits(frac)) or text.endswith("."):
        raise ValueError("must be a non-negative decimal string such as \"12.5\" (no sign, exponent or comma)")
    if len(frac) > decimals:
        raise ValueError(f"has {len(frac)} decimal places; the token has {decimals}")
    value = int(whole) * 10**decimals + (int(frac.ljust(decimals, "0")) if frac else 0)
    if value > MAX_UINT256:
        raise ValueError("exceeds 2**256-1 base units")
    return value
