"""The target every end-to-end notification test takes down and brings back."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.alerting.receivers import Target


@pytest.fixture
def target() -> Iterator[Target]:
    """A loopback HTTP target on its own port; ``stop()``/``start()`` take it down and back."""
    with Target() as server:
        yield server
