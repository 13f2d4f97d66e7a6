"""README.md and the model cards say what the code does: generated sections are current, every command they show
parses with the real parsers and names files that exist, and every default they quote is the bundle's."""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib.util
import inspect
import io
import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

from common import docgen
from common.cli import build_parser as common_parser
from common.errors import ConfigError
from common.experiments.__main__ import build_parser as experiments_parser
from common.sharing.__main__ import build_parser as sharing_parser

REPO = docgen.REPO
DOCS = docgen.DOC_FILES
IDS = [str(f.relative_to(REPO)) for f in DOCS]
CARDS = [f for f in DOCS if f.parent.name == "docs"]

PARSERS = {"common": common_parser, "common.experiments": experiments_parser, "common.sharing": sharing_parser}


def _without_generated(text: str) -> str:
    return docgen._SECTION.sub("", text)


def _bundle_var(text: str) -> str | None:
    """The ``B=bundles/<name>`` the commands of a file use."""
    found = re.search(r"`B=([^`\s]+)`", text)
    return found.group(1) if found else None


def _commands(file: Path) -> list[tuple[list[str], bool]]:
    """(argv, complete) of every command: lines of ```bash blocks (complete) and inline `python -m ...` spans."""
    text = file.read_text()
    bundle = _bundle_var(text)
    found: list[tuple[str, bool]] = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        found += [(line, True) for line in block.replace("\\\n", " ").splitlines() if line.strip()]
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    for span in re.findall(r"`([^`]+)`", prose):
        span = " ".join(span.split())
        if re.match(r"(python -m |medxfer |torchrun |make )", span):
            found.append((span, False))
    commands = []
    for line, complete in found:
        argv = shlex.split(line, comments=True)
        if bundle is not None:
            argv = [token.replace("$B", bundle) for token in argv]
        if argv:
            commands.append((argv, complete))
    return commands


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _check_option_names(parser: argparse.ArgumentParser, argv: list[str], line: str) -> None:
    """Every sub-command named exists and every ``--option`` belongs to the (sub-)parser it follows."""
    for token in argv:
        if token.startswith("-"):
            option = token.split("=", 1)[0]
            assert option in parser._option_string_actions, f"{line}: {parser.prog} has no option {option}"
        elif token in _subparsers(parser):
            parser = _subparsers(parser)[token]


def _parse_fully(parser: argparse.ArgumentParser, argv: list[str], line: str) -> None:
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(argv)
    except SystemExit as stop:
        assert stop.code == 0, f"{line}: {stderr.getvalue().strip().splitlines()[-1]}"


def _repo_path(token: str) -> Path | None:
    """A path into the repository's configs or bundles (outputs under models/ excepted)."""
    token = token.removeprefix("bundle:")
    if token.startswith(("configs/", "bundles/")) and "/models/" not in token:
        return REPO / token
    return None


def _config_files(value: str) -> list[str]:
    return [str(v) for v in ast.literal_eval(value)] if value.startswith("[") else [value]


def _check_monai(argv: list[str], line: str) -> None:
    """``python -m monai.bundle <command> --key value ...``: files exist; ``run`` sets only known config ids."""
    from monai.bundle import scripts

    command, options = argv[0], argv[1:]
    while options and not options[0].startswith("--"):  # positional, e.g. ckpt_export's net_id "network_def"
        options = options[1:]
    values = dict(zip(options[::2], options[1::2], strict=False))
    assert all(key.startswith("--") for key in values), f"{line}: expected --key value pairs"
    configs = _config_files(values.get("--config_file", "[]"))
    for file in configs + [values.get("--meta_file", "")]:
        if file:
            assert (REPO / file).is_file(), f"{line}: {file} does not exist"
    if "--bundle_root" in values:
        assert (REPO / values["--bundle_root"]).is_dir(), f"{line}: no bundle {values['--bundle_root']}"
    known = set(inspect.signature(getattr(scripts, command)).parameters)
    if command == "run":
        for file in configs:
            known |= set(json.loads((REPO / file).read_text()))
    unknown = sorted(key[2:] for key in values if key[2:] not in known)
    assert not unknown, f"{line}: {', '.join(unknown)} not a parameter of {command} nor a key of {configs}"


def _make_targets() -> set[str]:
    text = (REPO / "Makefile").read_text()
    variables = dict(re.findall(r"^(\w+)\s*\??:?=\s*(.*?)\s*$", text, re.M))
    targets = set()
    for target in re.findall(r"^([^\s:#=]+):(?!=)", text, re.M):
        while "$(" in target:
            target = re.sub(r"\$\((\w+)\)", lambda m: variables[m.group(1)], target)
        targets.add(target)
    return targets


def _check_command(argv: list[str], complete: bool) -> None:
    line = shlex.join(argv)
    if argv[0] == "medxfer":
        argv = ["python", "-m", "common", *argv[1:]]
    if argv[0] == "torchrun":
        argv = ["python", *[a for a in argv[1:] if not a.startswith("--nproc")]]
    if argv[0] == "make":
        targets = _make_targets()
        for target in argv[1:]:
            if "=" not in target:
                assert target in targets, f"{line}: the Makefile has no target {target}"
        return
    assert argv[:2] == ["python", "-m"] or argv[:2] == ["python", "-c"], f"{line}: not a command this test knows"
    if argv[1] == "-c":
        return
    module, rest = argv[2], argv[3:]
    assert importlib.util.find_spec(module) is not None, f"{line}: no module {module}"
    for token in rest:
        path = _repo_path(token)
        assert path is None or path.exists(), f"{line}: {token} does not exist"
    if module in PARSERS:
        parser = PARSERS[module]()
        _check_option_names(parser, rest, line)
        if complete:
            _parse_fully(parser, rest, line)
    elif module == "monai.bundle" and complete:
        _check_monai(rest, line)


@pytest.mark.parametrize("file", DOCS, ids=IDS)
def test_generated_sections_are_current(file: Path) -> None:
    text = file.read_text()
    assert docgen.refresh(text, str(file)) == text, f"{file} is stale: run python -m common.docgen"


def test_every_doc_has_its_sections() -> None:
    sections = {f: re.findall(r"<!-- generated:([\w-]+(?: \S+)?) -->", f.read_text()) for f in DOCS}
    assert {"demo-settings", "tour-settings"} <= set(sections[REPO / "README.md"])
    for card in CARDS:
        assert f"bundle-defaults {card.parent.parent.name}" in sections[card], card


def test_demo_settings_follow_the_grid_file(tmp_path: Path) -> None:
    raw = yaml.safe_load(docgen.REPO.joinpath("configs", "grids", "demo.yaml").read_text())
    raw["seeds"], raw["overrides"]["epochs"] = [3], 2
    grid = tmp_path / "demo.yaml"
    grid.write_text(yaml.safe_dump(raw))
    text = docgen.demo_settings(grid)
    assert "- 6 cells:" in text and "x seed (3)" in text and "`epochs` 2," in text


def test_bundle_defaults_are_the_train_json_values() -> None:
    config = json.loads((REPO / "bundles" / "breast_mammo_classification" / "configs" / "train.json").read_text())
    text = docgen.bundle_defaults("breast_mammo_classification")
    assert f"`arch` {config['arch']}," in text and f"`batch_size` {config['batch_size']}," in text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<!-- generated:nope -->\n<!-- /generated -->", "unknown generated section 'nope'"),
        ("<!-- generated:bundle-defaults -->\n<!-- /generated -->", "'bundle-defaults' needs argument"),
        ("<!-- generated:demo-settings x -->\n<!-- /generated -->", "'demo-settings' takes no argument"),
        ("<!-- generated:bundle-defaults nobundle -->\n<!-- /generated -->", "no bundle 'nobundle'"),
    ],
    ids=["unknown", "missing-argument", "extra-argument", "unknown-bundle"],
)
def test_bad_sections_are_refused(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        docgen.refresh(text)


@pytest.mark.parametrize("file", DOCS, ids=IDS)
def test_every_command_parses_and_names_existing_files(file: Path) -> None:
    commands = _commands(file)
    assert commands, f"no commands found in {file}"
    for argv, complete in commands:
        _check_command(argv, complete)


@pytest.mark.parametrize("file", CARDS, ids=[str(f.relative_to(REPO)) for f in CARDS])
def test_defaults_quoted_in_the_card_are_the_bundles(file: Path) -> None:
    """"`key` value" or "`key` (value)" in the prose, for a top-level key of train.json, is that key's value."""
    config = json.loads((file.parents[1] / "configs" / "train.json").read_text())
    quoted = re.findall(r"`(\w+)` \(?(-?\d[\d.]*(?:e-?\d+)?)\b", _without_generated(file.read_text()))
    checked = [(key, value) for key, value in quoted if key in config]
    for key, value in checked:
        assert float(value) == float(config[key]), f"{file}: `{key}` {value} but train.json has {config[key]}"


def test_the_quick_start_says_how_to_reach_the_environment() -> None:
    readme = (REPO / "README.md").read_text()
    quick_start = readme[readme.index("## Quick start"):readme.index("### What the demo does")]
    assert "source .venv/bin/activate" in quick_start and "`.venv/bin/`" in quick_start
    assert "medxfer" in quick_start


def test_a_wrong_option_is_caught() -> None:
    """The checks above are not vacuous: a misspelt option and a missing config fail them."""
    with pytest.raises(AssertionError, match="has no option --dataset_dir"):
        _check_command(shlex.split("python -m common prepare-data chestxray14 --dataset_dir /d --output o"), False)
    with pytest.raises(AssertionError, match="does not exist"):
        _check_command(shlex.split("python -m monai.bundle run --config_file bundles/x/configs/train.json"), True)
    with pytest.raises(AssertionError, match="not a parameter of run"):
        _check_command(shlex.split("python -m monai.bundle run --config_file "
                                   "bundles/chest_xray_classification/configs/train.json --epoch 3"), True)
