"""The rules of :mod:`common.sharing.audit`: what a config expression or ``_target_`` reaches, read with :mod:`ast`.

Nothing here evaluates a config: an expression is parsed (``ast.parse``), its names and attribute chains are
resolved through the imports the configs make (and MONAI's default globals ``monai``, ``torch``, ``np``,
``numpy``), and each dotted path is classified against the allowlist. ``@`` references are replaced by
placeholder names first, as MONAI replaces them by ``__local_refs['id']`` before :func:`eval`.
"""

from __future__ import annotations

import ast
import builtins
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monai.bundle import ConfigParser
from monai.bundle.reference_resolver import ReferenceResolver

from common.sharing.audit_allowlist import (
    DANGEROUS_STRING,
    RISKY_NAMES,
    STDLIB_ATTRIBUTES,
    UNKNOWN,
    Bindings,
    call_problem,
    classify_path,
    target_path,
)

__all__ = ["Verdict", "analyse_expression", "analyse_target", "import_bindings", "macro_problem"]

_PLACEHOLDER = "_medxfer_ref_{}"


@dataclass(frozen=True)
class Verdict:
    """What one entry reaches: its category, why it is flagged (empty: not flagged), names and references."""

    category: str
    reasons: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    is_import: bool = False



def _parse(body: str) -> ast.AST | None:
    try:
        return ast.parse(body, mode="eval")
    except SyntaxError:
        pass
    try:
        return ast.parse(body, mode="exec")
    except SyntaxError:
        return None


def _imports_of(tree: ast.AST) -> list[tuple[str, str, bool]]:
    """(bound name, dotted path, is a module) for each import in ``tree``; ``*`` gives the name ``*``."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.asname or a.name.split(".")[0], a.name if a.asname else a.name.split(".")[0], True)
                    for a in node.names]
            out += [("", a.name, True) for a in node.names if not a.asname and "." in a.name]
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            out += [(a.asname or a.name, f"{module}.{a.name}" if a.name != "*" else "*", False) for a in node.names]
    return out


def import_bindings(texts: Iterable[str]) -> Bindings:
    """The global names bound by every import among the expression ``texts`` (MONAI's globals are config-wide)."""
    bindings = Bindings()
    for text in texts:
        tree = _parse(text[1:].strip())
        for name, dotted, is_module in _imports_of(tree) if tree is not None else ():
            if name and name != "*":
                bindings.names.setdefault(name, set()).add(dotted)
                if is_module:
                    bindings.modules.add(name)
    return bindings


def _literal(node: ast.AST | None) -> Any:
    try:
        return ast.literal_eval(node) if node is not None else None
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return UNKNOWN


def _chain(node: ast.AST) -> tuple[ast.AST, list[str]]:
    attrs: list[str] = []
    while isinstance(node, ast.Attribute):
        attrs.insert(0, node.attr)
        node = node.value
    return node, attrs


def _ref_paths(ref: str, bindings: Bindings, ids: dict[str, Any], depth: int = 0) -> set[str]:
    """The dotted paths a referenced item stands for when it is a bare name (``"m": "$torch.hub"``), else {}."""
    value = ids.get(ref.replace("::", "#"))
    if depth > 8 or not isinstance(value, str):
        return set()
    if value.startswith("@") and ReferenceResolver.match_refs_pattern(value):
        return _ref_paths(value[1:], bindings, ids, depth + 1)
    if not value.startswith("$"):
        return set()
    tree = _parse(value[1:].strip())
    body = tree.body if isinstance(tree, ast.Expression) else None
    base, attrs = _chain(body) if body is not None else (None, [])
    if isinstance(base, ast.Name) and base.id in bindings.names:
        return {".".join([root, *attrs]) for root in bindings.names[base.id]}
    return set()


class _Analysis:
    """One expression's walk: its names (resolved), references, reasons to flag, categories seen."""

    def __init__(self, bindings: Bindings, ids: dict[str, Any], refs: dict[str, str]) -> None:
        self.bindings, self.ids, self.refs = bindings, ids, refs
        self.names: list[str] = []
        self.reasons: list[str] = []
        self.categories: list[str] = []

    def flag(self, reason: str) -> None:
        if reason and reason not in self.reasons:
            self.reasons.append(reason)

    def path(self, dotted: str) -> None:
        category, reason = classify_path(dotted, self.bindings)
        self.names.append(dotted)
        self.categories.append(category)
        self.flag(f"{dotted}: {reason}" if reason and not reason.startswith(dotted) else reason)

    def resolve(self, base: ast.AST, attrs: list[str], local: set[str]) -> list[str]:
        """The dotted paths of a chain ``base.attrs`` (empty when its base is a value the audit cannot name)."""
        if not isinstance(base, ast.Name) or base.id in local:
            return []
        if base.id in self.refs:
            return [".".join([p, *attrs]) for p in sorted(_ref_paths(self.refs[base.id], self.bindings, self.ids))]
        roots = sorted(self.bindings.names.get(base.id, {base.id}))
        return [".".join([root, *attrs]) for root in roots]

    def chain(self, node: ast.AST, parent: ast.AST | None, local: set[str]) -> None:
        base, attrs = _chain(node)
        for attr in attrs:
            if attr.startswith("__"):
                self.flag(f"dunder attribute {attr} reaches interpreter internals")
            elif (attr in RISKY_NAMES or attr in STDLIB_ATTRIBUTES) and (
                    not isinstance(base, ast.Name) or base.id in local or base.id in self.refs):
                self.flag(f".{attr}: {RISKY_NAMES.get(attr, 'a standard-library module reached as an attribute')}")
        if not isinstance(base, ast.Name) or base.id in local:
            return
        if base.id.startswith("__"):
            self.flag(f"{base.id} reaches interpreter internals")
            return
        if base.id in self.refs:
            self.categories.append("reference")
            for dotted in self.resolve(base, attrs, local):
                self.path(dotted)
            return
        if base.id not in self.bindings.names and not hasattr(builtins, base.id):
            self.flag(f"{base.id} is neither imported by the configs nor a builtin")
            self.categories.append("other")
            return
        is_call = isinstance(parent, ast.Call) and parent.func is node
        if not attrs and base.id in self.bindings.modules and not is_call:
            self.flag(f"passes the module {base.id} as a value; what is done with it escapes the audit")
        for dotted in self.resolve(base, attrs, local):
            self.path(dotted)

    def call(self, node: ast.Call, local: set[str]) -> None:
        base, attrs = _chain(node.func)
        args = {k.arg: _literal(k.value) for k in node.keywords if k.arg}
        positional = [_literal(a) for a in node.args]
        for dotted in self.resolve(base, attrs, local):
            self.flag(call_problem(dotted, args, positional))


def _locals(tree: ast.AST) -> set[str]:
    """Names bound inside the expression: comprehension targets, lambda arguments, ``:=`` targets."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.comprehension | ast.NamedExpr):
            names |= {n.id for n in ast.walk(node.target) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.arguments):
            names |= {a.arg for a in [*node.posonlyargs, *node.args, *node.kwonlyargs, node.vararg, node.kwarg] if a}
    return names


def _with_placeholders(text: str) -> tuple[str, dict[str, str]]:
    """``text`` with each ``@ref`` replaced by a placeholder name, as MONAI replaces it before eval."""
    body = ReferenceResolver.normalize_id(text[1:])
    refs = sorted(set(ReferenceResolver.id_matcher.findall(body)), key=len, reverse=True)
    names = {}
    for index, ref in enumerate(refs):
        name = _PLACEHOLDER.format(index)
        names[name] = ref[1:]
        body = body.replace(ref, name)
    return body.strip(), names


def analyse_expression(text: str, bindings: Bindings, ids: dict[str, Any], config_id: str = "") -> Verdict:
    """Classify the ``$`` expression ``text`` (never evaluated) given the configs' imports and items ``ids``."""
    if config_id and ("#" in text or "@" in text):
        try:
            text = ConfigParser.resolve_relative_ids(config_id.replace("#", "::"), text)
        except ValueError:
            pass
    body, refs = _with_placeholders(text)
    tree = _parse(body)
    references = tuple(ref.replace("::", "#") for ref in refs.values())
    if tree is None:
        return Verdict("other", ("not a Python expression: the audit cannot say what it runs",), (), references)
    first = tree.body[0] if isinstance(tree, ast.Module) and tree.body else None
    is_import = isinstance(first, ast.Import | ast.ImportFrom)
    analysis = _Analysis(bindings, ids, refs)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            module = "." * getattr(node, "level", 0) + (getattr(node, "module", None) or "")
            for alias in node.names:
                dotted = alias.name if isinstance(node, ast.Import) else f"{module}.{alias.name}"
                if alias.name == "*" or dotted.startswith("."):
                    analysis.flag(f"{dotted}: a star or relative import binds names the audit cannot see")
                else:
                    analysis.path(dotted)
    local = _locals(tree)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    for node in ast.walk(tree):
        parent = parents.get(node)
        if isinstance(node, ast.Name | ast.Attribute) and not isinstance(parent, ast.Attribute):
            analysis.chain(node, parent, local)
        elif isinstance(node, ast.Call):
            analysis.call(node, local)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and DANGEROUS_STRING.match(node.value):
            analysis.flag(f"the string {node.value!r} names a module or function to reach at run time")
    order = sorted(analysis.categories, key=lambda c: (c != "other", c in ("reference", "builtin"), c == "builtin"))
    category = (order or ["reference" if refs else "literal"])[0]
    if analysis.reasons and category == "literal":
        category = "other"
    return Verdict(category, tuple(analysis.reasons), tuple(dict.fromkeys(analysis.names)), references, is_import)


def analyse_target(target: Any, component: dict[str, Any], bindings: Bindings, ids: dict[str, Any]) -> Verdict:
    """Classify a ``_target_``: a literal dotted path (short MONAI names resolved as MONAI does), else what it names."""
    if isinstance(target, dict | list) or target is None:
        return Verdict("reference")  # a nested component: its own _target_ is audited where it stands
    if not isinstance(target, str):
        return Verdict("other", (f"_target_ {target!r} is not a name",))
    if target.startswith("%"):
        return Verdict("reference")  # merged views audit the macro's content in its place
    if target.startswith("$") or target.startswith("@"):
        ref = target[1:] if target.startswith("@") else None
        paths = sorted(_ref_paths(ref, bindings, ids)) if ref else []
        value = ids.get(ref.replace("::", "#")) if ref else None
        if ref and isinstance(value, str) and not value.startswith(("$", "@", "%")):
            paths = [target_path(value)]
        if not paths and target.startswith("$"):
            tree = _parse(target[1:].strip())
            base, attrs = _chain(tree.body) if isinstance(tree, ast.Expression) else (None, [])
            if isinstance(base, ast.Name) and base.id in bindings.names:
                paths = [".".join([root, *attrs]) for root in sorted(bindings.names[base.id])]
        if not paths:
            return Verdict("other", (f"_target_ {target} is built at run time: the audit cannot say what it names",))
        return _target_verdict(paths, component, bindings, (ref.replace("::", "#"),) if ref else ())
    return _target_verdict([target_path(target)], component, bindings, ())


def _target_verdict(paths: list[str], component: dict[str, Any], bindings: Bindings,
                    refs: tuple[str, ...]) -> Verdict:
    literal = component.get("_target_")
    args = {str(k): (v if not (isinstance(v, str) and v[:1] in "$@%") else UNKNOWN)
            for k, v in component.items() if not str(k).startswith("_")}
    reasons, categories = [], []
    for dotted in paths:
        category, reason = classify_path(dotted, bindings)
        categories.append(category)
        for why in (reason, call_problem(dotted, args, [])):
            if why:
                reasons.append(why if why.startswith(dotted) or dotted == literal else f"{dotted}: {why}")
    return Verdict(categories[0], tuple(dict.fromkeys(reasons)), tuple(paths), refs)


def macro_problem(text: str, root: Path, base: Path) -> Verdict:
    """A ``%`` macro: fine when it reads a file inside the bundle (audited there), flagged when outside or missing."""
    path, _ = ConfigParser.split_path_id(text[1:])
    if not path:
        return Verdict("reference")
    where = Path(path)
    candidates = [where] if where.is_absolute() else [root / where]
    inside = [p for p in candidates if p.resolve().is_relative_to(root.resolve())]
    if not inside:
        return Verdict("reference", (f"macro reads {path}, outside the bundle: its content is not audited",))
    if not inside[0].is_file():
        return Verdict("reference", (f"macro reads {path}, which is not in the bundle",))
    return Verdict("reference")
