"""The suite's temporary-folder hook (tests/conftest.py) removes what module fixtures made, and only that."""

from __future__ import annotations

from pathlib import Path

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

def test_uses(built, shared):
    assert built.is_dir() and shared.is_dir()
'''


def _run(pytester: pytest.Pytester, body: str) -> tuple[pytest.RunResult, set[str]]:
    """The suite's layout: the hook's conftest and the session fixture in a folder below the rootdir (a session
    fixture is set up on the session node, which a hook defined in that folder's conftest alone would not see)."""
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
    assert Path(request.config.rootpath, "tests", "conftest.py").is_file()
    assert request.config.getini("tmp_path_retention_policy") == "failed"


# In this suite itself: a class fixture that first requests a session fixture of a sub-folder's conftest
# (tests/hygiene/conftest.py) inside its body, as tests/bundles/test_bundle_checks.py's module fixture does with
# tests/bundles/conftest.py's datasets. Such a session fixture is set up where tests/conftest.py's own hooks do not
# run, which is why the hook is a registered plugin.
_SEEN: dict[str, Path] = {}


@pytest.fixture(scope="class")
def _class_folder(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    _SEEN["session"] = request.getfixturevalue("_session_folder")
    _SEEN["class"] = tmp_path_factory.mktemp("removed_with_the_class")
    return _SEEN["class"]


class TestFolders:
    def test_both_folders_exist_while_the_class_runs(self, _class_folder: Path) -> None:
        # the session fixture is not an argument here: pytest would set it up before the class fixture
        assert _class_folder.is_dir() and _SEEN["session"].is_dir()


def test_after_the_class_only_the_session_folder_is_left() -> None:
    assert not _SEEN["class"].exists()
    assert _SEEN["session"].is_dir()
