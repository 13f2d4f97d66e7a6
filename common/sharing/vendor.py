"""Vendoring: copy the ``common`` modules a bundle's configs use into the bundle as the package ``scripts``.

A received bundle must run where medxfer is not installed (``medxfer`` is not on any package index), and where
another package called ``common`` (a generic name) or another medxfer version may be importable. So
:func:`vendor_into` copies exactly the modules the configs reach into ``<bundle>/scripts/`` (the model-zoo
convention for bundle code) and renames the package everywhere it is named as code:

- the configs: ``"$import common.networks"`` -> ``"$import scripts.networks"``, ``common.x`` inside ``$``
  expressions, ``"_target_": "common.transforms.CLAHEd"`` -> ``"scripts.transforms.CLAHEd"``, and any string that
  is a whole dotted path into ``common``; prose (changelog, descriptions) is left alone;
- the vendored source: every ``import common...`` / ``from common... import`` statement, found through the AST,
  function-level ones included, rewritten at its exact position (docstrings and messages are not touched).

Which modules: the ones the configs name, plus the transitive closure of their ``common`` imports (an AST walk
of every statement). A package reached only as the parent of a needed module (``common.data`` when only
``common.data.datalist`` is used) is vendored as a stub ``__init__.py`` holding its docstring, because its
real ``__init__`` imports every adapter and generator the bundle never calls. Afterwards the result is checked:
no vendored file imports ``common`` or uses the name, and no config expression, ``_target_`` or dotted-path
string refers to it; a miss raises :class:`~common.sharing.errors.PackError`.

``scripts/vendored.json`` records the origin (``{"package": "common", "as": "scripts", "medxfer_version",
"commit", "dirty", "files": {"scripts/x.py": {"source": "common/x.py", "sha256_source", "sha256", "stub"}}}``),
and ``configs/metadata.json`` loses its ``medxfer`` requirement and gains, in ``required_packages_version``, every
third-party package the vendored code imports, pinned as in ``requirements.txt``
(:mod:`common.sharing.requirements`).

Running a vendored bundle: MONAI evaluates ``imports`` when the configs are parsed, before ``monai.bundle run``
puts the bundle root on ``sys.path``, so run it from the bundle root (``cd <bundle> && python -m monai.bundle run
--config_file configs/inference.json ...``: ``-m`` puts the working directory on ``sys.path``) or put the bundle
root on ``PYTHONPATH``. Two vendored bundles in one Python process share the module name ``scripts``; load one
per process.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

import common
from common.io import atomic_write_json, atomic_write_text
from common.sharing.errors import PackError
from common.sharing.provenance import source_revision
from common.sharing.requirements import declare_requirements, third_party_imports

__all__ = ["SOURCE_PACKAGE", "VENDOR_PACKAGE", "VENDOR_RECORD", "module_closure", "referenced_modules",
           "rewrite_config_value", "rewrite_source", "vendor_into"]

SOURCE_PACKAGE, VENDOR_PACKAGE = "common", "scripts"
VENDOR_RECORD = "vendored.json"
SOURCE_ROOT = Path(common.__file__).resolve().parent
#: ``common`` as a name or the head of a dotted path in config text; not ``@common``, ``x.common`` or ``common_x``.
_NAME = re.compile(rf"(?<![\w.@#]){SOURCE_PACKAGE}(?=\b)(?:\.\w+)*")
_DOTTED = re.compile(rf"^{SOURCE_PACKAGE}(?:\.\w+)+$")
_STRING_LITERAL = re.compile(r"'(?:\\.|[^'\\])*'" + r'|"(?:\\.|[^"\\])*"')  # in an expression
_REFERENCE = re.compile(r"@[\w#]*")  # a MONAI config reference, replaced before an expression is parsed


def _module_file(name: str) -> Path | None:
    """The source file of module ``name`` (``common.x.y``) in this checkout, or None when it is not a module."""
    parts = name.split(".")
    if parts[0] != SOURCE_PACKAGE:
        return None
    path = SOURCE_ROOT.joinpath(*parts[1:])
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None


def _longest_module(dotted: str) -> str | None:
    """The longest prefix of ``common.a.b.C.attr`` that is a module (``common.a.b``)."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        if _module_file(".".join(parts[:end])) is not None:
            return ".".join(parts[:end])
    return None


def _strings(value: Any, key: str = "") -> list[tuple[str, str]]:
    """Every string in a parsed config as ``(key it sits under, text)``."""
    if isinstance(value, dict):
        return [pair for k, v in value.items() for pair in _strings(v, str(k))]
    if isinstance(value, list):
        return [pair for v in value for pair in _strings(v, key)]
    return [(key, value)] if isinstance(value, str) else []


def _config_files(bundle_dir: Path) -> list[Path]:
    """The JSON configs of a bundle; a YAML config is refused (vendoring rewrites JSON only)."""
    configs = bundle_dir / "configs"
    yaml_files = sorted([*configs.rglob("*.yaml"), *configs.rglob("*.yml")])
    if yaml_files:
        raise PackError(f"{yaml_files[0]}: YAML configs cannot be vendored yet; convert them to JSON")
    return sorted(configs.rglob("*.json"))


def _is_code(key: str, text: str) -> bool:
    return text.startswith("$") or key == "_target_" or bool(_DOTTED.match(text))


def referenced_modules(bundle_dir: str | Path) -> set[str]:
    """The ``common`` modules a bundle's configs name in ``$`` expressions, ``_target_`` s and dotted paths."""
    found: set[str] = set()
    for file in _config_files(Path(bundle_dir)):
        for key, text in _strings(json.loads(file.read_text(encoding="utf-8"))):
            if not _is_code(key, text):
                continue
            for match in _code_names(text):
                module = _longest_module(match.group(0))
                if module is None:
                    raise PackError(f"{file}: {match.group(0)!r} names no module of medxfer's common package")
                found.add(module)
    return found


def _package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


@functools.cache
def _imports(name: str, path: Path) -> frozenset[str]:
    """Every ``common`` module that module ``name`` imports anywhere (function level included)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names if alias.name.split(".")[0] == SOURCE_PACKAGE}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(name, path).split(".")[: len(_package_of(name, path).split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            if module.split(".")[0] == SOURCE_PACKAGE:
                out.add(module)
                out |= {f"{module}.{a.name}" for a in node.names if _module_file(f"{module}.{a.name}") is not None}
    return frozenset(out)


def module_closure(seeds: set[str]) -> tuple[dict[str, Path], set[str]]:
    """The modules ``seeds`` need, with their files, and which packages among them can be stubs.

    A package is a stub when nothing imports it by name (it is only the parent of a needed module); its own
    imports are then not followed. Iterated until the set of stubs stops changing.
    """
    stubs: set[str] = set()
    while True:
        files: dict[str, Path] = {}
        named, todo = set(seeds), list(seeds)
        while todo:
            parts = todo.pop().split(".")
            for end in range(1, len(parts) + 1):
                module = ".".join(parts[:end])
                path = _module_file(module)
                if path is None or module in files:
                    continue
                files[module] = path
                if module not in stubs:
                    found = _imports(module, path)
                    named |= found
                    todo.extend(found)
        new_stubs = {m for m, p in files.items() if m not in named and p.name == "__init__.py" and m != SOURCE_PACKAGE}
        if new_stubs == stubs:
            return files, stubs
        stubs = new_stubs


def _offsets(source: str) -> list[int]:
    starts, total = [0], 0
    for line in source.splitlines(keepends=True):
        total += len(line)
        starts.append(total)
    return starts


def rewrite_source(source: str, filename: str = "<vendored>") -> str:
    """``source`` with every absolute import of ``common`` renamed to ``scripts`` (found by AST, spliced exactly).

    Raises:
        PackError: the result still imports ``common`` or uses the name ``common`` (``import common.x`` followed
            by ``common.x.f()`` cannot be renamed by its import alone).
    """
    starts, edits = _offsets(source), []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == SOURCE_PACKAGE:
                    edits.append(starts[alias.lineno - 1] + alias.col_offset)
        elif isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").startswith(SOURCE_PACKAGE) \
                and (node.module or "").split(".")[0] == SOURCE_PACKAGE:
            at = starts[node.lineno - 1] + node.col_offset
            match = re.compile(r"from\s+(?:\\\n\s*)?").match(source, at)
            if match is None:
                raise PackError(f"{filename}:{node.lineno}: cannot locate the module of this from-import")
            edits.append(match.end())
    for at in sorted(edits, reverse=True):
        if source[at:at + len(SOURCE_PACKAGE)] != SOURCE_PACKAGE:
            raise PackError(f"{filename}: expected {SOURCE_PACKAGE!r} at offset {at}, found {source[at:at + 20]!r}")
        source = source[:at] + VENDOR_PACKAGE + source[at + len(SOURCE_PACKAGE):]
    _check_source(source, filename)
    return source


def _check_source(source: str, filename: str) -> None:
    for node in ast.walk(ast.parse(source, filename)):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        bad = [n for n in names if n.split(".")[0] == SOURCE_PACKAGE]
        if bad or (isinstance(node, ast.Name) and node.id == SOURCE_PACKAGE):
            raise PackError(f"{filename}:{node.lineno}: still refers to {SOURCE_PACKAGE!r} after vendoring")


def _code_names(text: str) -> list[re.Match[str]]:
    """Matches of ``common`` paths in a config string, leaving out those inside string literals of an expression."""
    literals = [m.span() for m in _STRING_LITERAL.finditer(text)] if text.startswith("$") else []
    return [m for m in _NAME.finditer(text) if not any(a <= m.start() < b for a, b in literals)]


def rewrite_config_value(key: str, text: str) -> str:
    """One config string with ``common`` renamed where it is code (expression, ``_target_``, dotted path).

    Example:
        >>> rewrite_config_value("initialize", "$common.networks.check(@ckpt, 'common')")
        "$scripts.networks.check(@ckpt, 'common')"
    """
    if not _is_code(key, text):
        return text
    for match in reversed(_code_names(text)):
        text = text[:match.start()] + VENDOR_PACKAGE + text[match.start() + len(SOURCE_PACKAGE):]
    return text


def _rewrite_config(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _rewrite_config(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_rewrite_config(v, key) for v in value]
    return rewrite_config_value(key, value) if isinstance(value, str) else value


def _check_config(file: Path, config: Any) -> None:
    """No expression (parsed, references replaced), ``_target_`` or dotted-path string still names ``common``."""
    for key, text in _strings(config):
        if not _is_code(key, text):
            continue
        where = f"{file}: {key!r}: {text[:80]!r}"
        if key == "_target_" or not text.startswith("$"):
            if text.split(".")[0] == SOURCE_PACKAGE:
                raise PackError(f"{where} still names {SOURCE_PACKAGE!r} after vendoring")
            continue
        try:
            tree = ast.parse(_REFERENCE.sub("_ref", text[1:]).strip())
        except SyntaxError:
            if _NAME.search(text):
                raise PackError(f"{where} still names {SOURCE_PACKAGE!r} after vendoring") from None
            continue
        try:
            _check_source(ast.unparse(tree), where)
        except PackError as exc:
            raise PackError(f"{where} still names {SOURCE_PACKAGE!r} after vendoring") from exc


def _sha256(data: bytes) -> str:
    """Hex sha256 of bytes in memory (the vendored text before and after renaming; not a file on disk)."""
    return hashlib.sha256(data).hexdigest()


def _stub(source: str, module: str) -> str:
    doc = ast.get_docstring(ast.parse(source)) or module
    note = (f"Vendored stub of {module}: only the submodules this bundle uses were copied; the package's own "
            "re-exports were left out.")
    return f'"""{doc.rstrip()}\n\n{note}\n"""\n'


def vendor_into(bundle_dir: str | Path) -> dict[str, Any]:
    """Copy the ``common`` modules ``bundle_dir``'s configs use into ``bundle_dir/scripts`` and point the configs
    at them; returns the record also written to ``scripts/vendored.json``.

    Rewrites the bundle in place (``pack`` calls it on its staging copy, never on the site's bundle).

    Raises:
        PackError: ``scripts/`` exists already (a bundle vendored twice, or with its own scripts), a config names
            a ``common`` attribute that is no module, or a reference to ``common`` survives the rewrite.

    Example:
        >>> record = vendor_into("/tmp/staging/chest_xray_classification")  # doctest: +SKIP
        >>> record["files"]["scripts/networks/factory.py"]["source"]  # doctest: +SKIP
        'common/networks/factory.py'
    """
    root = Path(bundle_dir)
    target = root / VENDOR_PACKAGE
    if target.exists():
        raise PackError(f"{target}: exists already; vendoring writes this folder and never merges into one")
    files, stubs = module_closure(referenced_modules(root))
    revision = source_revision([path.relative_to(SOURCE_ROOT.parent).as_posix() for path in files.values()])
    record: dict[str, Any] = {"package": SOURCE_PACKAGE, "as": VENDOR_PACKAGE, "medxfer_version": common.__version__,
                              **revision, "files": {}}
    packages: set[str] = set()
    for module, path in sorted(files.items()):
        relative = path.relative_to(SOURCE_ROOT)
        dest = target / relative
        original = path.read_text(encoding="utf-8")
        if module in stubs:
            text = _stub(original, module)
        else:
            text = rewrite_source(original, f"{SOURCE_PACKAGE}/{relative.as_posix()}")
            packages |= third_party_imports(ast.parse(original), own=(SOURCE_PACKAGE, VENDOR_PACKAGE))
        atomic_write_text(dest, text)
        record["files"][f"{VENDOR_PACKAGE}/{relative.as_posix()}"] = {
            "source": f"{SOURCE_PACKAGE}/{relative.as_posix()}", "sha256_source": _sha256(original.encode()),
            "sha256": _sha256(text.encode()), "stub": module in stubs}
    for file in _config_files(root):
        config = _rewrite_config(json.loads(file.read_text(encoding="utf-8")))
        if file.name == "metadata.json":
            config = declare_requirements(config, packages)
        _check_config(file, config)
        atomic_write_text(file, json.dumps(config, indent=4, ensure_ascii=False) + "\n")
    shutil.rmtree(target / "__pycache__", ignore_errors=True)
    atomic_write_json(target / VENDOR_RECORD, record)
    return record
