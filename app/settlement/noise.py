"""Noise and address poisoning: which transfers need no record, and which outbound payments look like a
poisoning loss. Pure; standard library only.

Noise (zero value, dust from an unknown sender, a sender that looks like a known address) is something that
*arrives*: anyone can send it to our wallets. Only inbound transfers from outside are ever noise. Whatever leaves
one of our wallets was signed by us (or spoofed in our name) and must be explained: an outbound transfer to an
address that looks like a known one but is not is what an address-poisoning loss looks like, and is a
high-severity break of its own type (`outbound_lookalike`), not noise.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from app.settlement.model import TransferFact

ZERO_VALUE = "zero_value"
DUST = "dust"
POISONING_SUSPECT = "poisoning_suspect"
NOISE_KINDS = (ZERO_VALUE, DUST, POISONING_SUSPECT)


def lookalike_shape(address: str) -> str:
    """What an address-poisoning look-alike copies: the first and last 4 hex digits, lower case."""
    return (address[2:6] + address[-4:]).lower()


def counterparty_of(t: TransferFact) -> str:
    """The other side of a transfer that touches our wallets."""
    return t.sender if t.recipient_is_ours else t.recipient


def is_inbound_from_outside(t: TransferFact) -> bool:
    return t.recipient_is_ours and not t.sender_is_ours


def is_outbound_to_outside(t: TransferFact) -> bool:
    return t.sender_is_ours and not t.recipient_is_ours


class Lookalikes:
    """Known addresses (counterparties and our wallets) by look-alike shape, indexed only for the shapes of the
    given transfers' counterparties."""

    def __init__(self, known: Iterable[str], transfers: Iterable[TransferFact]) -> None:
        self.known = {k.lower() for k in known}
        wanted = {lookalike_shape(counterparty_of(t)) for t in transfers}
        self._shapes: dict[str, set[str]] = defaultdict(set)
        for k in self.known:
            if lookalike_shape(k) in wanted:
                self._shapes[lookalike_shape(k)].add(k)

    def imitates(self, address: str) -> bool:
        """Whether `address` shares its shape with a known address other than itself."""
        return bool(self.imitated(address))

    def imitated(self, address: str) -> list[str]:
        """The known addresses, other than itself, that `address` shares its shape with (lower case, sorted)."""
        other = address.lower()
        return sorted(self._shapes.get(lookalike_shape(other), set()) - {other})


def noise_kinds(t: TransferFact, lookalikes: Lookalikes, dust: Mapping[tuple[int, str], int]) -> tuple[str, ...]:
    """The noise flags of one transfer: none unless it is inbound from outside."""
    if not is_inbound_from_outside(t):
        return ()
    kinds = []
    if t.amount == 0:
        kinds.append(ZERO_VALUE)
    elif t.amount < dust.get((t.chain_id, t.token), 0) and t.sender.lower() not in lookalikes.known:
        kinds.append(DUST)
    if lookalikes.imitates(t.sender):
        kinds.append(POISONING_SUSPECT)
    return tuple(kinds)


def is_outbound_lookalike(t: TransferFact, lookalikes: Lookalikes) -> bool:
    """An outbound transfer to outside whose recipient imitates a known address."""
    return is_outbound_to_outside(t) and lookalikes.imitates(t.recipient)
