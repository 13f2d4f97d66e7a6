"""A session fixture for tests/hygiene/test_temporary_folders.py, in a sub-folder's conftest like the datasets'."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def _session_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kept_for_the_session")
