"""Rendezvous ownership: pinned answers, determinism, minimal disruption, an even spread."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uptime_daemon.cluster import ownership
from uptime_daemon.cluster.ownership import owned_by, owners, weight

NAMES = st.text(min_size=1, max_size=8)
MEMBER_SETS = st.sets(NAMES, min_size=1, max_size=8)
SERVICES = st.lists(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", max_size=12), max_size=40
)
REPLICAS = st.integers(min_value=1, max_value=5)


@pytest.mark.parametrize(
    ("service", "members", "replicas", "expected"),
    [
        # Pinned: every daemon of a cluster, whatever its version, must compute these same owners.
        pytest.param("http", ["a", "b", "c"], 3, ("b", "c", "a"), id="all-ranked-best-first"),
        pytest.param("http", ["a", "b", "c"], 1, ("b",), id="one-owner"),
        pytest.param("database", ["c", "a", "b"], 2, ("b", "a"), id="two-owners"),
        pytest.param(
            "websocket",
            ["daemon-1", "daemon-2", "daemon-3", "daemon-4", "daemon-5"],
            2,
            ("daemon-1", "daemon-5"),
            id="five-members",
        ),
        pytest.param("http", ["a", "b", "c"], 7, ("b", "c", "a"), id="more-replicas-than-members"),
        pytest.param("http", ["solo"], 2, ("solo",), id="single-member"),
        pytest.param("http", [], 2, (), id="no-members"),
        pytest.param("http", ["a", "b", "a", "b"], 3, ("b", "a"), id="duplicates-count-once"),
    ],
)
def test_owners(service: str, members: list[str], replicas: int, expected: tuple[str, ...]) -> None:
    """Known inputs give known, pinned owners."""
    assert owners(service, members, replicas) == expected


def test_weight_is_blake2b_of_member_nul_service() -> None:
    """The weight is a stable digest (pinned), not Python's per-process salted ``hash``."""
    assert weight("a", "http") == 7502424230748635728
    digest = hashlib.blake2b(b"a\0http", digest_size=8).digest()
    assert weight("a", "http") == int.from_bytes(digest, "big")
    assert weight("ab", "c") != weight("a", "bc")


def test_ties_are_broken_by_member_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """With equal weights the order is the members' names, so it is still total."""
    monkeypatch.setattr(ownership, "weight", lambda _member, _service: 42)
    assert owners("http", ["c", "a", "b"], 2) == ("a", "b")


@pytest.mark.parametrize("replicas", [pytest.param(0, id="zero"), pytest.param(-1, id="negative")])
def test_replicas_below_one_are_refused(replicas: int) -> None:
    """A service nobody owns would never be checked: that is a caller's bug, said loudly."""
    with pytest.raises(ValueError, match="replicas must be at least 1"):
        owners("http", ["a"], replicas)
    with pytest.raises(ValueError, match="replicas must be at least 1"):
        owned_by("a", ["http"], ["a"], replicas)


@pytest.mark.parametrize(
    ("member", "members", "replicas", "expected"),
    [
        pytest.param("b", ["a", "b", "c"], 1, {"http", "database"}, id="owns-its-share"),
        pytest.param("a", ["a", "b", "c"], 1, set(), id="may-own-nothing"),
        pytest.param("a", ["a", "b", "c"], 2, {"database", "websocket"}, id="second-owner-counts"),
        pytest.param("x", ["a", "b", "c"], 3, set(), id="not-a-member"),
        pytest.param("a", ["a"], 1, {"http", "database", "websocket"}, id="alone-owns-all"),
    ],
)
def test_owned_by(member: str, members: list[str], replicas: int, expected: set[str]) -> None:
    """A member owns exactly the services whose owners include it."""
    services = ["http", "database", "websocket"]
    assert owned_by(member, services, members, replicas) == frozenset(expected)


def _owner_map(
    services: Iterable[str], members: set[str], replicas: int
) -> dict[str, tuple[str, ...]]:
    return {service: owners(service, members, replicas) for service in services}


@given(SERVICES, st.lists(NAMES, min_size=1, max_size=8), REPLICAS, st.randoms())
def test_deterministic_and_independent_of_member_order(
    services: list[str], members: list[str], replicas: int, rnd: random.Random
) -> None:
    """Any order (and repetition) of the same members gives the same owners."""
    shuffled = list(members)
    rnd.shuffle(shuffled)
    for service in services:
        first = owners(service, members, replicas)
        assert owners(service, tuple(shuffled), replicas) == first
        assert owners(service, iter(members), replicas) == first


@given(SERVICES, MEMBER_SETS, REPLICAS)
def test_every_service_has_min_r_n_distinct_owners(
    services: list[str], members: set[str], replicas: int
) -> None:
    """Exactly ``min(r, n)`` owners, all distinct, all members."""
    for service, found in _owner_map(services, members, replicas).items():
        assert len(found) == min(replicas, len(members)), service
        assert len(set(found)) == len(found)
        assert set(found) <= members


@given(SERVICES, MEMBER_SETS, REPLICAS)
def test_owned_by_agrees_with_owners(services: list[str], members: set[str], replicas: int) -> None:
    """Each member's share is exactly the services naming it; every service is owned r times."""
    shares = {member: owned_by(member, services, members, replicas) for member in members}
    for service in services:
        holders = {member for member, share in shares.items() if service in share}
        assert holders == set(owners(service, members, replicas))


@given(SERVICES, st.sets(NAMES, min_size=2, max_size=8), REPLICAS, st.data())
def test_removing_a_member_moves_only_its_services(
    services: list[str], members: set[str], replicas: int, data: st.DataObject
) -> None:
    """Minimal disruption: only the services the removed member owned move.

    A service it did not own keeps exactly its owners; one it did own keeps its other owners (in
    order) and gains at most one new one.
    """
    removed = data.draw(st.sampled_from(sorted(members)))
    before = _owner_map(services, members, replicas)
    after = _owner_map(services, members - {removed}, replicas)
    for service in services:
        if removed not in before[service]:
            assert after[service] == before[service], service
        else:
            kept = tuple(member for member in before[service] if member != removed)
            assert after[service][: len(kept)] == kept, service
            assert len(set(after[service]) - set(before[service])) <= 1


@given(SERVICES, MEMBER_SETS, REPLICAS, NAMES)
def test_adding_a_member_only_takes_services_onto_it(
    services: list[str], members: set[str], replicas: int, added: str
) -> None:
    """A newcomer only takes services onto itself; a service it does not take keeps its owners."""
    before = _owner_map(services, members, replicas)
    after = _owner_map(services, members | {added}, replicas)
    for service in services:
        assert set(after[service]) - set(before[service]) <= {added}, service
        if added not in after[service]:
            assert after[service] == before[service], service


@settings(max_examples=20, deadline=None)
@given(st.sets(NAMES, min_size=1, max_size=8))
def test_one_replica_partitions_the_services(members: set[str]) -> None:
    """With r = 1 the shares of all members are disjoint and cover every service."""
    services = [f"svc-{i}" for i in range(200)]
    shares = [owned_by(member, services, members, 1) for member in members]
    assert sum(len(share) for share in shares) == len(services)
    assert frozenset().union(*shares) == frozenset(services)


@pytest.mark.parametrize(
    ("members", "replicas", "low", "high"),
    [
        pytest.param(["a", "b", "c"], 1, 800, 1200, id="3-members-r1"),
        pytest.param(["m1", "m2", "m3", "m4", "m5"], 2, 1000, 1400, id="5-members-r2"),
    ],
)
def test_load_spreads_evenly(members: list[str], replicas: int, low: int, high: int) -> None:
    """3000 services: each member owns close to its fair share ``3000 · r / n``."""
    services = [f"svc-{i}" for i in range(3000)]
    for member in members:
        assert low <= len(owned_by(member, services, members, replicas)) <= high, member
