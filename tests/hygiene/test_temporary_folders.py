"""The suite's temporary-folder hook (tests/conftest.py) removes what module fixtures made, and only that."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

CONFTEST = "from tests.conftest import pytest_configure  # noqa: F401\n"

SUB_CONFTEST = '''
import pytest

@pytest.fixture(scope="session")
def shared(tmp_path_factory):
    return tmp_path_factory.mktemp("shared")
'''

INNER = '''
import pytest

@pytest.fixture(scope="module")
def built(request, tmp_path_factory):
    request.getfixturevalue("shared")  # a session fixture first made inside a module fixture's body
    return tmp_path_factory.mktemp("built")

def test_uses(built):  # not `shared`: pytest would set a session fixture argument up before `built`
    assert built.is_dir()
'''


def _run(pytester: pytest.Pytester, body: str) -> tuple[pytest.RunResult, set[str]]:
    """The suite's layout: the hook's conftest in a folder below the rootdir, the session fixture in a sub-folder's
    conftest (it is set up on the session node, which a hook defined in a conftest alone would not see)."""
    pytester.makeini("[pytest]\ntestpaths = suite\n")
    package = pytester.mkdir("suite")
    (package / "conftest.py").write_text(CONFTEST)
    sub = package / "sub"
    sub.mkdir()
    (sub / "conftest.py").write_text(SUB_CONFTEST)
    (sub / "test_inner.py").write_text(body)
    (sub / "test_later.py").write_text("def test_later(shared):\n    assert shared.is_dir()\n")
    base = pytester.path / "base"
    result = pytester.runpytest_inprocess(f"--basetemp={base}", "-p", "no:cacheprovider")
    return result, {entry.name for entry in base.iterdir() if not entry.is_symlink()}


def test_module_folders_go_and_session_folders_stay(pytester: pytest.Pytester) -> None:
    result, left = _run(pytester, INNER)
    result.assert_outcomes(passed=2)
    assert left == {"shared0"}


def test_folders_of_a_failed_module_are_kept(pytester: pytest.Pytester) -> None:
    result, left = _run(pytester, INNER + "\ndef test_fails(built):\n    assert False\n")
    result.assert_outcomes(passed=2, failed=1)
    assert left == {"shared0", "built0"}


def test_hook_is_active_for_this_suite(request: pytest.FixtureRequest) -> None:
    assert request.config.pluginmanager.has_plugin("medxfer-module-folder-cleaner")
    assert request.config.getini("tmp_path_retention_policy") == "failed"
