"""Wallet registry: addresses (checksummed once, at the boundary), kinds and segregation classes."""

from wallets.addresses import Address, address_to_topic, is_zero_address, to_checksum, topic_to_address
from wallets.errors import InvalidAddress, WalletError
from wallets.registry import Segregation, Wallet, WalletKind, WalletRegistry

__all__ = [
    "Address",
    "InvalidAddress",
    "Segregation",
    "Wallet",
    "WalletError",
    "WalletKind",
    "WalletRegistry",
    "address_to_topic",
    "is_zero_address",
    "to_checksum",
    "topic_to_address",
]
