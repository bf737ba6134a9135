"""Which members own a service: rendezvous (highest-random-weight) hashing, a pure function.

Every daemon computes the same answer from the same inputs (the alive members of its location and a
service name), so no coordination is needed beyond agreeing on who is alive. Rendezvous hashing is
chosen over a hash ring because it needs no virtual nodes to spread load evenly, and it disrupts
minimally: when a member goes, only the services it owned move; when one comes, it only takes
services onto itself.

The weight is ``blake2b(member NUL service)``, never Python's ``hash``: ``hash`` of a string is
salted per process (``PYTHONHASHSEED``), so two daemons would disagree about every owner.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Final

WEIGHT_BYTES: Final = 8
"""Digest size of the weight: 64 bits make ties between distinct members practically impossible
(they are still broken by name, so the order is total)."""


def weight(member: str, service: str) -> int:
    """The rendezvous weight of ``member`` for ``service``: stable across processes and versions.

    The NUL separator keeps ``("ab", "c")`` and ``("a", "bc")`` apart.
    """
    digest = hashlib.blake2b(f"{member}\0{service}".encode(), digest_size=WEIGHT_BYTES).digest()
    return int.from_bytes(digest, "big")


def _check_replicas(replicas: int) -> None:
    if replicas < 1:
        raise ValueError(f"replicas must be at least 1, got {replicas}")


def owners(service: str, members: Iterable[str], replicas: int) -> tuple[str, ...]:
    """The ``min(replicas, len(members))`` members that own ``service``, best first.

    Duplicate names in ``members`` count once, and their order does not matter. Ties in weight are
    broken by member name, so the result is a total, deterministic order.

    Raises:
        ValueError: ``replicas`` is below 1 (a service nobody owns is never checked: a config bug).
    """
    _check_replicas(replicas)
    ranked = sorted(set(members), key=lambda member: (-weight(member, service), member))
    return tuple(ranked[:replicas])


def owned_by(
    member: str, services: Iterable[str], members: Iterable[str], replicas: int
) -> frozenset[str]:
    """The services among ``services`` that ``member`` owns (empty when it is not in ``members``)."""
    _check_replicas(replicas)
    alive = frozenset(members)
    if member not in alive:
        return frozenset()
    return frozenset(service for service in services if member in owners(service, alive, replicas))
