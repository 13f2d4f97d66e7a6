"""The vendored-code part of :mod:`common.sharing.audit`: each file under ``scripts/``, hashed and compared.

A packed bundle carries the ``common`` modules its configs use as the package ``scripts``
(:mod:`common.sharing.vendor`), listed in ``scripts/vendored.json`` with their sha256 and source path. This is
medxfer's own library, so it is not scanned for ``import os`` and the like; instead every file is checked
against the listing and against the ``common`` source of the medxfer running the audit (this very package):
after its ``scripts`` imports are named ``common`` again, a vendored module must equal that source byte for
byte. A package stub (``"stub": true``, a parent package whose real ``__init__`` is not needed) must hold no
code beyond a docstring.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import common
from common.sharing.manifest import file_sha256

__all__ = ["VENDOR_FOLDER", "VENDOR_RECORD", "unvendor_source", "vendored_findings"]

VENDOR_FOLDER, VENDOR_RECORD = "scripts", "vendored.json"
#: files Python would import: source, bytecode (a sourceless .pyc imports), native extensions
_CODE_SUFFIXES = (".py", ".pyc", ".pyo", ".so", ".pyd")
#: ``import scripts.x`` / ``from scripts.x import y`` / ``from scripts import y``, at any indentation
_VENDORED_IMPORT = re.compile(r"^(\s*(?:from|import)\s+)scripts(?=[.\s])", re.MULTILINE)
MEDXFER_ROOT = Path(common.__file__).resolve().parent.parent


def unvendor_source(text: str) -> str:
    """``text`` with its ``scripts`` import statements naming ``common`` again (the reverse of vendoring)."""
    return _VENDORED_IMPORT.sub(r"\1common", text)


def _is_stub(text: str) -> bool:
    try:
        body = ast.parse(text).body
    except SyntaxError:
        return False
    code = [n for n in body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
    future = [n for n in code if isinstance(n, ast.ImportFrom) and n.module == "__future__"]
    return len(code) == len(future)


def _record(folder: Path) -> tuple[dict[str, Any], str]:
    path = folder / VENDOR_RECORD
    if not path.is_file():
        return {}, f"no {VENDOR_FOLDER}/{VENDOR_RECORD}"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return {}, f"{VENDOR_FOLDER}/{VENDOR_RECORD} is not valid JSON ({exc})"
    files = record.get("files") if isinstance(record, dict) else None
    if not isinstance(files, dict):
        return {}, f"{VENDOR_FOLDER}/{VENDOR_RECORD} has no 'files' object"
    return files, ""


def _same_revision(folder: Path) -> bool:
    """Whether the bundle says its code was vendored from exactly the medxfer commit installed here (both clean).

    Only then must every vendored file equal this medxfer's source; vendored from another commit (or from a
    checkout with uncommitted changes), a difference is expected and listed for review instead of flagged: the
    sender's signature is what vouches for that code.
    """
    from common.sharing.provenance import source_revision

    try:
        record = json.loads((folder / VENDOR_RECORD).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    here = source_revision()
    return (isinstance(record, dict) and bool(record.get("commit")) and record.get("commit") == here["commit"]
            and record.get("dirty") is False and here["dirty"] is False)


def _compare(path: Path, entry: dict[str, Any], same_revision: bool = True) -> tuple[str, str]:
    """(status, reason to flag or "") of a listed vendored file against this medxfer's source."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if entry.get("stub"):
        return ("stub (docstring only)", "") if _is_stub(text) else ("stub", "a stub that holds code")
    source = entry.get("source")
    if not isinstance(source, str) or not source.startswith("common/"):
        return "no source", f"the listing gives no common/ source for it ({source!r})"
    installed = (MEDXFER_ROOT / source).resolve()
    if not installed.is_relative_to(MEDXFER_ROOT) or not installed.is_file():
        return f"not compared: {source} is not in this medxfer ({common.__version__})", ""
    if unvendor_source(text) == installed.read_text(encoding="utf-8", errors="replace"):
        return f"identical to {source} of this medxfer ({common.__version__})", ""
    if not same_revision:
        return f"differs from {source} of this medxfer ({common.__version__}; vendored from another revision)", ""
    return "differs", f"differs from {source} of this medxfer ({common.__version__}) beyond the scripts imports"


def vendored_findings(root: Path) -> list[dict[str, Any]]:
    """One finding (as a dict: file, text, category, flagged, reason) per file under ``scripts/`` and per gap."""
    folder = root / VENDOR_FOLDER
    if not folder.is_dir():
        return []
    files, problem = _record(folder)
    same_revision = _same_revision(folder)
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() or p.is_symlink()):
        rel = path.relative_to(root).as_posix()
        if rel == f"{VENDOR_FOLDER}/{VENDOR_RECORD}":
            continue
        if path.is_symlink():
            found.append(_finding(rel, "symbolic link", "a symbolic link among the vendored code"))
            continue
        sha = file_sha256(path)
        entry = files.get(rel)
        if not isinstance(entry, dict):
            is_code = path.suffix.lower() in _CODE_SUFFIXES
            why = problem or f"not listed in {VENDOR_FOLDER}/{VENDOR_RECORD}"
            found.append(_finding(rel, f"sha256 {sha}", f"{why}: code nobody vendored" if is_code else ""))
        elif entry.get("sha256") != sha:
            found.append(_finding(rel, f"sha256 {sha}", f"sha256 differs from {VENDOR_FOLDER}/{VENDOR_RECORD} "
                                                        f"({entry.get('sha256')})"))
        else:
            status, reason = _compare(path, entry, same_revision)
            found.append(_finding(rel, f"sha256 {sha} {status}", reason))
    for rel in sorted(set(files) - {f["file"] for f in found}):
        found.append(_finding(rel, "missing", f"listed in {VENDOR_FOLDER}/{VENDOR_RECORD} but not in the bundle"))
    return found


def _finding(file: str, text: str, reason: str) -> dict[str, Any]:
    return {"file": file, "text": text, "category": "scripts", "flagged": bool(reason), "reason": reason}
