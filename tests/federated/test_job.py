"""The NVFlare job of a federated run: what the exported server config sets (no simulator run)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest

from common.errors import ConfigError
from common.federated.job import TASK_REQUEST_INTERVAL, FederationSpec
from common.federated.simulate import export_job
from tests.federated.conftest import CHEST_BUNDLE, TINY


def _spec(tmp_path: Path, fl_sites: dict, **kwargs: object) -> FederationSpec:
    sites = {name: info["datalist"] for name, info in fl_sites["sites"].items()}
    return FederationSpec(bundle=str(CHEST_BUNDLE), sites=sites, overrides=dict(TINY), workdir=str(tmp_path / "fl"),
                          **kwargs)


@pytest.mark.parametrize("interval", [None, 0.25], ids=["default", "set"])
def test_server_asks_idle_sites_back_after_the_task_request_interval(tmp_path: Path, fl_sites: dict,
                                                                     interval: float | None) -> None:
    spec = _spec(tmp_path, fl_sites, **({} if interval is None else {"task_request_interval": interval}))
    with contextlib.chdir(tmp_path):
        job = export_job(spec, tmp_path / "export")
    server = json.loads((job / "app_server" / "config" / "config_fed_server.json").read_text())
    assert server["server"]["task_request_interval"] == (TASK_REQUEST_INTERVAL if interval is None else interval)


@pytest.mark.parametrize("interval", [0, -1, 61], ids=["zero", "negative", "over-a-minute"])
def test_bad_task_request_interval_is_refused(tmp_path: Path, fl_sites: dict, interval: float) -> None:
    with pytest.raises(ConfigError, match=f"task_request_interval must be in \\(0, 60\\] seconds, got {interval}"):
        _spec(tmp_path, fl_sites, task_request_interval=interval)
