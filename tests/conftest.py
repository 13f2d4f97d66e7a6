"""Suite-wide test settings: keep the suite's disk use bounded.

Most tests train or pack a real bundle, and each copy holds checkpoints of tens of MB. pytest keeps every
``tmp_path`` until the session ends unless ``tmp_path_retention_policy = "failed"`` (set in pyproject.toml), and it
keeps every ``tmp_path_factory.mktemp`` folder until the session ends whatever the policy: about 5 GB for this suite,
16 GB with the per-test folders, which filled a CI machine's disk. The hook below removes what a module- or
class-scoped fixture made with ``tmp_path_factory`` when that fixture is torn down, unless a test failed while it
was alive (the folders are kept to debug, as pytest's own policy does). Folders made by session-scoped fixtures are
never removed here, even when one is first requested inside a module fixture's body.
"""

from __future__ import annotations

import shutil
from collections.abc import Generator
from pathlib import Path

import pytest

_CLEANER = "medxfer-module-folder-cleaner"
_SESSION_OWNED: set[str] = set()
"""Names under the base temporary folder made by session-scoped fixtures (kept for the whole run)."""


def _entries(base: Path) -> set[str]:
    """Folders directly under ``base`` (pytest's ``<name>current`` symlinks left out)."""
    if not base.is_dir():
        return set()
    return {entry.name for entry in base.iterdir() if entry.is_dir() and not entry.is_symlink()}


class _ModuleFolderCleaner:
    """The hook, as a plugin registered on the config: a conftest's own hooks only see the nodes under its folder,
    and a session-scoped fixture is set up on the session node, outside ``tests/`` (so its folders would be missed
    and removed as a module fixture's)."""

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(
        self, fixturedef: pytest.FixtureDef, request: pytest.FixtureRequest
    ) -> Generator[None, object, object]:
        """Note the temporary folders a fixture makes; remove them at its teardown if it is not session-scoped."""
        if "tmp_path_factory" not in fixturedef.argnames or fixturedef.scope == "function":
            return (yield)
        base = request.getfixturevalue("tmp_path_factory").getbasetemp()
        before = _entries(base)
        failed_before = request.session.testsfailed
        result = yield
        made = _entries(base) - before
        if fixturedef.scope == "session":
            _SESSION_OWNED.update(made)
            return result

        def remove() -> None:
            if request.session.testsfailed > failed_before:
                return
            for name in made - _SESSION_OWNED:
                shutil.rmtree(base / name, ignore_errors=True)

        fixturedef.addfinalizer(remove)
        return result


def pytest_configure(config: pytest.Config) -> None:
    """Register :class:`_ModuleFolderCleaner` once per run."""
    if not config.pluginmanager.has_plugin(_CLEANER):
        config.pluginmanager.register(_ModuleFolderCleaner(), _CLEANER)
