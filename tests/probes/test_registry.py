"""The probe registry: one prober per kind, each pairing a kind's settings type with its own probe."""

from __future__ import annotations

import textwrap
import typing
from pathlib import Path

import pytest
from mypy import api as mypy_api

from uptime_daemon.config.model import Service
from uptime_daemon.probes import PROBERS
from uptime_daemon.results import CheckKind

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("kind", list(CheckKind))
def test_every_kind_has_a_prober_for_its_own_settings(kind: CheckKind) -> None:
    """The registry entry of a kind takes the settings whose ``kind`` is that kind."""
    prober = PROBERS[kind]
    annotation = prober.service_type.model_fields["kind"].annotation
    assert typing.get_args(annotation) == (kind,)


def test_the_registry_covers_exactly_the_configurable_kinds() -> None:
    """Every service type the config accepts has a prober, and no prober is unreachable."""
    union = typing.get_args(typing.get_args(Service)[0])
    assert {prober.service_type for prober in PROBERS.values()} == set(union)
    assert set(PROBERS) == set(CheckKind)


@pytest.mark.parametrize(
    ("pairing", "rejected"),
    [
        pytest.param("Prober(HttpService, probe_http)", False, id="own-kind"),
        pytest.param("Prober(HttpService, probe_database)", True, id="database-probe-for-http"),
        pytest.param("Prober(WebSocketService, probe_http)", True, id="http-probe-for-websocket"),
    ],
)
def test_pairing_a_probe_with_another_kinds_settings_is_a_type_error(
    tmp_path: Path, pairing: str, rejected: bool
) -> None:
    """The mismatch the probes no longer check at run time is caught by the type checker."""
    snippet = tmp_path / "pairing.py"
    snippet.write_text(
        textwrap.dedent(
            f"""
            from uptime_daemon.config.model import HttpService, WebSocketService
            from uptime_daemon.probes.base import Prober
            from uptime_daemon.probes.database import probe_database
            from uptime_daemon.probes.http import probe_http

            PAIR = {pairing}
            """
        )
    )
    out, _, status = mypy_api.run(
        [
            "--strict",
            "--no-incremental",
            "--follow-imports=silent",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            str(snippet),
        ]
    )
    assert (status != 0) is rejected, out
    if rejected:
        assert 'type parameter "ServiceT" of "Prober"' in out, out
