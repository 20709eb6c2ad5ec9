"""Errors of the wallets package: one root, specific leaves."""


class WalletError(Exception):
    """Root of every error raised by the wallets package."""


class InvalidAddress(WalletError, ValueError):
    """An address is malformed or carries a wrong EIP-55 checksum."""
