"""``audit``: every ``$`` expression, ``_target_`` and ``imports`` entry of a bundle's configs, classified and flagged.

A MONAI bundle is code: ``monai.bundle run`` evaluates every ``$`` string with :func:`eval` and instantiates every
``_target_`` by its dotted path (MONAI only warns about it, GHSA-873f-pvrv-4x83). The audit lists what a bundle
would run, **without evaluating any of it**: configs are read and merged by MONAI's own
:class:`~monai.bundle.ConfigParser` (``load_config_files``, ``read_meta``, ``resolve_macro_and_relative_ids``:
file reading and string substitution only, nothing instantiated), and each expression is analysed as text with
:mod:`ast` (names, attribute chains, calls, imports).

What is read: every ``.json``/``.yaml`` under ``configs/`` (nested folders too) on its own, so nothing hides in a
file no combination reads; and every combination ``monai.bundle run`` would be given: each complete config
(``train.json``, ``inference.json``: no ``#`` keys, has ``run`` or ``imports``) alone, with each other file as an
overlay, and with each ordered pair of the bundle's overlays (``train.json`` + ``evaluate.json`` + ``site.json``),
``metadata.json`` read as ``_meta_`` as MONAI does. ``extra_configs`` (``configs/finetune/*.json``, a site overlay)
join the overlays. A finding reports the file that holds its text, the config id (``validate#handlers#1``), the
kind (``expression``, ``import``, ``target``, ``macro``, ``mode``, ``vendored``), a category and, when flagged,
why.

The allowlist: ``monai``, ``torch``, ``torchvision``, ``numpy`` (MONAI's own default globals, ``np`` included),
``common`` (medxfer's bundle library: bundle_settings, data, engines, finetune, losses, metrics, networks,
transforms, errors, io; not its tooling such as ``common.bundle_runner`` or ``common.label``), ``scripts`` (only
when the bundle carries a ``scripts/`` folder), the config's own ``@`` references, the pure builtins in
:data:`SAFE_BUILTINS`, and from ``os`` only reading the environment and path helpers (:data:`OS_READS`; every
model-zoo bundle imports ``os`` for ``os.environ['LOCAL_RANK']``; ``import os`` alone runs nothing). Flagged:

- a name, import or ``_target_`` rooted anywhere else (``subprocess``, ``sys``, ``builtins``, ``pickle``,
  ``socket``, ``urllib``, ``importlib``, ``shutil``...), and a name no config imports;
- ``__import__``, ``eval``, ``exec``, ``compile``, ``getattr``/``setattr``/``delattr``, ``globals``/``locals``/
  ``vars``, any builtin off the list, and any dunder name or attribute (``().__class__.__bases__``);
- ``open`` always: for writing it changes files, and for reading, configs get their data through monai/common
  loaders, so a raw read is how a config copies a secret (a key, ``/etc/passwd``) into outputs it ships back;
  the mode is often not a literal, so a "read only" open cannot be proven from the text;
- unpickling and native code: ``torch.load`` without a literal ``weights_only=True``, any call or component
  given ``weights_only`` other than a literal true (``PersistentDataset`` caches) or ``allow_pickle`` other than
  false (``numpy.load``, ``NumpyReader``), ``torch.package``, ``torch.utils.cpp_extension``, ``load_library``,
  ``numpy.ctypeslib``;
- network: ``torch.hub``, ``load_state_dict_from_url``, ``download_url``, ``download=True``, ``monai.bundle``
  (it downloads, reads and runs further configs, code this audit never sees);
- names that turn strings into code: ``monai.utils.optional_import``, ``instantiate``, ``locate``, a
  ``_target_`` built at run time, and string literals naming ``os``, ``subprocess``, ``eval``...;
- a standard-library module reached through an allowlisted one (``torch.serialization.pickle``,
  ``monai.utils.misc.subprocess``: an attribute that is not a submodule of the library), ``torch.distributed``
  launchers and ``rpc``;
- a module passed around as a value (``$torch``: its later use escapes the analysis), ``_mode_: debug`` (pdb),
  and ``%`` macros reading files outside the bundle.

To tell ``monai.transforms.io`` (a MONAI module) from ``torch.serialization.pickle`` and to resolve short
``_target_`` names the way MONAI does, the audit imports the allowlisted libraries themselves (``scripts`` is
looked up as this medxfer's ``common``); it never imports or runs anything from the bundle.

An ``@ref`` inside an expression counts as a reference to its own config item, which is classified where it is
defined; only when that item is a bare name (``"m": "$torch.hub"``) is the name followed (``@m.load``).

Vendored code: a packed bundle carries the ``common`` modules its configs use as the package ``scripts``
(:mod:`common.sharing.vendor`). The audit lists each file under ``scripts/`` with its sha256 and flags a ``.py``
(or compiled ``.pyc``/``.so``) not listed in ``scripts/vendored.json``, a hash that differs from the listing, a
listed file that is missing, and a file that differs from this medxfer's own ``common`` source once its
``scripts`` imports are named ``common`` again (stubs may hold a docstring only). Vendored code is medxfer's own
library, so it is compared, not scanned for ``import os``.

What the audit does not answer: which paths an allowlisted function writes (a checkpoint saver writes where the
config says, by design), or whether ``models/model.pt`` is a safe pickle (``verify`` loads it with
``weights_only=True``).

Modules: this one reads configs, merges views and reports; :mod:`common.sharing.audit_rules` analyses one
expression or ``_target_``; :mod:`common.sharing.audit_allowlist` says which dotted paths are allowed;
:mod:`common.sharing.audit_vendored` checks ``scripts/``.

Example:
    >>> report = audit_bundle(Path("bundles/chest_xray_classification"))  # doctest: +SKIP
    >>> report.flagged  # doctest: +SKIP
    []
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from monai.bundle import ConfigParser

from common.sharing.audit_allowlist import OS_READS, SAFE_BUILTINS, Bindings
from common.sharing.audit_rules import (
    Verdict,
    analyse_expression,
    analyse_target,
    import_bindings,
    macro_problem,
)
from common.sharing.audit_vendored import vendored_findings
from common.sharing.errors import SharingError

__all__ = ["OS_READS", "SAFE_BUILTINS", "AuditReport", "Finding", "add_arguments", "audit_bundle", "run"]

_SUFFIXES = (".json", ".yaml", ".yml")
_META = "metadata.json"


@dataclass(frozen=True)
class Finding:
    """One expression, import, ``_target_``, macro, mode or vendored file, as the audit classified it."""

    file: str
    config_id: str
    kind: str
    text: str
    category: str
    flagged: bool = False
    reason: str = ""
    names: tuple[str, ...] = ()
    references: tuple[str, ...] = ()

    def line(self) -> str:
        """One line: ``FLAGGED file  id  text: reason`` (or ``ok ... [category]``)."""
        mark = "FLAGGED" if self.flagged else "ok"
        where = f"{self.file}  {self.config_id}" if self.config_id else self.file
        tail = f": {self.reason}" if self.flagged else f"  [{self.category}]"
        return f"{mark} {where}  {self.text}{tail}"


@dataclass
class AuditReport:
    """All findings of one bundle; ``flagged`` are the ones that stop ``run`` and make ``audit`` exit 1."""

    bundle: str
    configs: list[str]
    combinations: list[list[str]]
    findings: list[Finding]
    notes: list[str] = field(default_factory=list)

    @property
    def flagged(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.flagged]

    def counts(self) -> dict[str, int]:
        """Findings per category, sorted by category."""
        counts: dict[str, int] = {}
        for finding in self.findings:
            counts[finding.category] = counts.get(finding.category, 0) + 1
        return dict(sorted(counts.items()))

    def to_text(self, show_all: bool = False) -> str:
        flagged = self.flagged
        lines = [f"audit of {self.bundle}: {len(self.findings)} findings in {len(self.configs)} config files, "
                 f"{len(self.combinations)} combinations; {len(flagged)} flagged"]
        lines += [finding.line() for finding in (self.findings if show_all else flagged) if finding.kind != "vendored"]
        vendored = [finding for finding in self.findings if finding.kind == "vendored"]
        if vendored:
            lines.append("vendored code (scripts/):")
            lines += [f"  {finding.line()}" for finding in vendored]
        if self.notes:
            lines.append(f"note: {len(self.notes)} combinations do not merge (MONAI could not run them either); "
                         "each of their files was audited on its own (details in --json)")
        lines.append("counts: " + ", ".join(f"{name} {count}" for name, count in self.counts().items()))
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"bundle": self.bundle, "configs": self.configs, "combinations": self.combinations,
                "flagged": len(self.flagged), "counts": self.counts(), "notes": self.notes,
                "findings": [asdict(finding) for finding in self.findings]}


def _config_files(root: Path) -> list[Path]:
    folder = root / "configs"
    if not folder.is_dir():
        raise SharingError(f"{root}: no configs/ folder; is this a bundle?")
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in _SUFFIXES)


def _label(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def _load(path: Path) -> dict[str, Any]:
    try:
        content = ConfigParser.load_config_file(path)
    except Exception as exc:  # json/yaml/duplicate-key errors of any kind: the file is not a config
        raise SharingError(f"{path}: not a readable JSON/YAML config ({type(exc).__name__}: {exc})") from exc
    if not isinstance(content, dict):
        raise SharingError(f"{path}: a config must be a JSON/YAML object, found {type(content).__name__}")
    return content


def _is_complete(content: dict[str, Any]) -> bool:
    keys = [str(k) for k in content]
    return not any("#" in k or "::" in k or k.startswith("+") for k in keys) and ("run" in keys or "imports" in keys)


@dataclass
class _Entry:
    config_id: str
    kind: str
    text: str
    container: Any = None  # the dict holding a _target_ (its other keys are the call's arguments)


def _walk(node: Any, parts: tuple[str, ...] = ()) -> Iterable[_Entry]:
    """Every expression, import, macro, ``_target_`` and ``_mode_: debug`` in ``node``, with its ``#`` id."""
    config_id = "#".join(parts).replace("::", "#")
    if isinstance(node, dict):
        if "_target_" in node:
            target = node["_target_"]
            yield _Entry(f"{config_id}#_target_".lstrip("#"), "target",
                         target if isinstance(target, str) else json.dumps(target), node)
        if node.get("_mode_") == "debug":
            yield _Entry(f"{config_id}#_mode_".lstrip("#"), "mode", "debug")
        for key, value in node.items():
            yield from _walk(value, (*parts, str(key).lstrip("+") if not parts else str(key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, (*parts, str(index)))
    elif isinstance(node, str) and node.startswith("$"):
        yield _Entry(config_id, "expression", node)
    elif isinstance(node, str) and node.startswith("%"):
        yield _Entry(config_id, "macro", node)


def _flat(node: Any, parts: tuple[str, ...] = (), into: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every config id of ``node`` (``#``-joined) to its raw value, for following ``@`` references."""
    into = {} if into is None else into
    into["#".join(parts).replace("::", "#")] = node
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in children:
        _flat(value, (*parts, str(key).lstrip("+") if not parts else str(key)), into)
    return into


def _classify(entry: _Entry, bindings: Bindings, ids: dict[str, Any], root: Path, base: Path) -> Verdict:
    if entry.kind == "expression":
        return analyse_expression(entry.text, bindings, ids, entry.config_id)
    if entry.kind == "target":
        return analyse_target(entry.container.get("_target_"), entry.container, bindings, ids)
    if entry.kind == "macro":
        return macro_problem(entry.text, root, base)
    return Verdict("mode", ("_mode_ 'debug' runs the component under pdb, an interactive debugger",))


class _Collector:
    """Findings from every view, merged by (file, id, kind, text); flagged when any view flags.

    A merged view gives an entry the id it has after merging (``imports#11`` for a ``+imports`` entry appended to
    eleven); when its file's own view holds the same text, the finding keeps that id, so it is listed once.
    """

    def __init__(self) -> None:
        self.found: dict[tuple[str, str, str, str], Finding] = {}
        self.own: dict[tuple[str, str, str], tuple[str, str, str, str]] = {}

    def add(self, file: str, entry: _Entry, verdict: Verdict, merged: bool = False) -> None:
        kind = "import" if entry.kind == "expression" and verdict.is_import else entry.kind
        key = (file, entry.config_id, kind, entry.text)
        if not merged:
            self.own.setdefault((file, kind, entry.text), key)
        elif key not in self.found:
            key = self.own.get((file, kind, entry.text), key)
        new = Finding(file, key[1], kind, entry.text, verdict.category, bool(verdict.reasons),
                      "; ".join(verdict.reasons), verdict.names, verdict.references)
        old = self.found.get(key)
        if old is not None and (old.flagged or not new.flagged):
            if new.flagged and new.reason not in old.reason:
                self.found[key] = Finding(**{**asdict(old), "reason": f"{old.reason}; {new.reason}"})
            return
        self.found[key] = new


def _combinations(files: list[Path], contents: dict[Path, dict], extras: list[Path]) -> list[list[Path]]:
    configs = [f for f in files if f.name != _META]
    complete = [f for f in configs if _is_complete(contents[f])]
    overlays = [f for f in configs if f not in complete]
    combos = [[c] for c in complete]
    for c in complete:
        combos += [[c, o] for o in overlays + extras]
        combos += [[c, a, b] for a in overlays for b in overlays if a != b]
    return combos


def _merged(combo: list[Path], meta: Path | None, root: Path) -> dict[str, Any]:
    parser = ConfigParser()
    if meta is not None:
        parser.read_meta(str(meta))
    parser.read_config([str(p) for p in combo])
    _absolute_macros(parser.config, root)
    parser.resolve_macro_and_relative_ids()
    return parser.get()


def _absolute_macros(node: Any, root: Path) -> Any:
    """Point relative ``%file.json#id`` macros at the bundle root (``run`` starts MONAI there)."""
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in list(children):
        if isinstance(value, str) and value.startswith("%"):
            path, _ = ConfigParser.split_path_id(value[1:])
            if path and not Path(path).is_absolute() and (root / path).resolve().is_relative_to(root.resolve()):
                node[key] = "%" + str(root / path) + value[1 + len(path):]
        else:
            _absolute_macros(value, root)


def _attribute(entry: _Entry, combo: list[Path], texts: dict[Path, set[tuple[str, str]]],
               contents: dict[Path, dict]) -> Path:
    """The file of ``combo`` an entry came from: the last holding its text, else the last setting its top key."""
    for path in reversed(combo):
        if (entry.kind, entry.text) in texts[path]:
            return path
    top = entry.config_id.split("#")[0]
    for path in reversed(combo):
        if any(str(k).lstrip("+").replace("::", "#").split("#")[0] == top for k in contents[path]):
            return path
    return combo[0]


def audit_bundle(folder: str | Path, extra_configs: Sequence[str | Path] = ()) -> AuditReport:
    """Audit every config of the bundle ``folder`` (and ``extra_configs`` overlays); nothing is evaluated.

    Raises:
        SharingError: ``folder`` has no ``configs/``, or a config is not readable JSON/YAML (named).
    """
    root = Path(folder)
    files = _config_files(root)
    extras = [Path(p) for p in extra_configs]
    for extra in extras:
        if not extra.is_file():
            raise SharingError(f"{extra}: extra config not found")
    contents = {path: _load(path) for path in files + extras}
    meta = next((f for f in files if f.name == _META and f.parent == root / "configs"), None)
    bindings = import_bindings(entry.text for content in contents.values() for entry in _walk(content)
                               if entry.kind == "expression")
    bindings.has_scripts = (root / "scripts").is_dir()
    labels = {path: _label(path, root) for path in [*files, *extras]}
    collector = _Collector()
    texts: dict[Path, set[tuple[str, str]]] = {}
    for path, content in contents.items():
        ids = _flat(content)
        entries = list(_walk(content))
        texts[path] = {(e.kind, e.text) for e in entries}
        for entry in entries:
            collector.add(labels[path], entry, _classify(entry, bindings, ids, root, path.parent))
    notes: list[str] = []
    combos = _combinations(files, contents, extras)
    for combo in combos:
        try:
            merged = _merged(combo, meta, root)
        except Exception as exc:  # MONAI could not merge these files either; each was audited on its own
            notes.append(f"{' + '.join(_label(p, root) for p in combo)} do not merge "
                         f"({type(exc).__name__}: {exc}); each file is audited on its own")
            continue
        ids = _flat(merged)
        for entry in _walk(merged):
            if entry.config_id.startswith("_meta_"):
                source = meta
            else:
                source = _attribute(entry, combo, texts, contents)
            collector.add(labels[source], entry, _classify(entry, bindings, ids, root, source.parent), merged=True)
    for found in vendored_findings(root):
        key = (found["file"], "", "vendored", found["text"])
        collector.found[key] = Finding(config_id="", kind="vendored", **found)
    findings = sorted(collector.found.values(), key=lambda f: (not f.flagged, f.file, f.config_id, f.kind, f.text))
    return AuditReport(str(folder), [_label(p, root) for p in files + extras],
                       [[_label(p, root) for p in combo] for combo in combos], findings, notes)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``python -m common.sharing audit``."""
    parser.add_argument("source", metavar="ARCHIVE_OR_DIR", type=Path, help="a bundle archive (.zip) or folder")
    parser.add_argument("--config", dest="extra_configs", action="append", default=[], type=Path, metavar="JSON",
                        help="an overlay from outside the bundle to audit with it (repeatable), e.g. a site.json")
    parser.add_argument("--json", action="store_true", help="print the report as JSON (every finding)")
    parser.add_argument("--all", action="store_true", help="list the findings that are not flagged too")


def run(args: argparse.Namespace) -> int:
    """``audit``: print the report; exit status 0 when nothing is flagged, 1 otherwise."""
    from common.sharing.safezip import received_bundle

    with received_bundle(args.source) as folder:
        report = audit_bundle(folder, args.extra_configs)
    report.bundle = str(args.source)
    text = json.dumps(report.to_json(), indent=2) if args.json else report.to_text(show_all=args.all)
    sys.stdout.write(text + "\n")
    return 1 if report.flagged else 0
