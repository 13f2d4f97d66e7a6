"""The rules of :mod:`common.sharing.audit`: what a config expression or ``_target_`` reaches, read with :mod:`ast`.

Nothing here evaluates a config: an expression is parsed (``ast.parse``), its names and attribute chains are
resolved through the imports the configs make (and MONAI's default globals ``monai``, ``torch``, ``np``,
``numpy``), and each dotted path is classified against the allowlist. ``@`` references are replaced by
placeholder names first, as MONAI replaces them by ``__local_refs['id']`` before :func:`eval`.
"""

from __future__ import annotations

import ast
import builtins
import functools
import importlib.util
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monai.bundle import ConfigParser
from monai.bundle.config_item import ComponentLocator
from monai.bundle.reference_resolver import ReferenceResolver

__all__ = ["OS_READS", "SAFE_BUILTINS", "Bindings", "Verdict", "analyse_expression", "analyse_target",
           "classify_path", "import_bindings", "macro_problem"]

#: MONAI's ConfigParser default globals (monai/bundle/config_parser.py ``_default_globals``)
MONAI_GLOBALS = {"monai": "monai", "torch": "torch", "np": "numpy", "numpy": "numpy"}
LIBRARIES = ("monai", "torch", "torchvision", "numpy")
#: medxfer's bundle library inside ``common`` (and vendored ``scripts``); the rest is tooling (servers, runners)
BUNDLE_LIBRARY = frozenset({"bundle_settings", "data", "engines", "finetune", "losses", "metrics", "networks",
                            "transforms", "errors", "io"})
#: builtins that only compute on their arguments
SAFE_BUILTINS = frozenset({"abs", "all", "any", "bool", "dict", "divmod", "enumerate", "filter", "float", "frozenset",
                           "int", "isinstance", "issubclass", "len", "list", "map", "max", "min", "pow", "range",
                           "reversed", "round", "set", "slice", "sorted", "str", "sum", "tuple", "zip", "None",
                           "True", "False"})
#: ``os`` as model-zoo bundles use it: reading the environment (``LOCAL_RANK``) and joining paths
OS_READS = frozenset({"os", "os.environ", "os.environ.get", "os.getenv", "os.sep", "os.cpu_count", "os.getcwd",
                      "os.path", "os.path.join", "os.path.exists", "os.path.isfile", "os.path.isdir",
                      "os.path.basename", "os.path.dirname", "os.path.splitext", "os.path.abspath",
                      "os.path.normpath", "os.path.expanduser"})
_BUILTIN_REASONS = {
    "__import__": "__import__ imports any module by name",
    "eval": "eval runs a string as code", "exec": "exec runs a string as code",
    "compile": "compile turns a string into code",
    "getattr": "getattr reaches an attribute by a computed name (how 'lo'+'ad' becomes torch.load)",
    "setattr": "setattr changes an attribute by a computed name", "delattr": "delattr removes an attribute",
    "globals": "globals exposes the evaluation namespace", "locals": "locals exposes the evaluation namespace",
    "vars": "vars exposes an object's attributes as a dict", "breakpoint": "breakpoint starts a debugger",
    "open": "open reads or writes any file (configs read data through monai/common loaders)",
}
#: dotted prefixes inside the allowlisted libraries that still run foreign code, unpickle, download or write
_RISKY_PATHS = {
    "torch.hub": "torch.hub downloads code and weights from the network and runs the code",
    "torch.utils.model_zoo": "downloads from the network",
    "torch.utils.cpp_extension": "compiles and loads native code",
    "torch.ops.load_library": "loads a native library", "torch.classes.load_library": "loads a native library",
    "torch.package": "torch.package imports code pickled into a package",
    "torch.distributed.rpc": "runs functions on remote workers",
    "torch.distributed.run": "launches processes running any script", "torch.distributed.launch": "launches processes",
    "torch.distributed.launcher": "launches processes", "torch.distributed.elastic": "launches processes",
    "torch.save": "writes a pickle at a path the config chooses",
    "numpy.save": "writes a file at a path the config chooses", "numpy.savez": "writes a file",
    "numpy.savetxt": "writes a file", "numpy.ctypeslib": "loads native libraries",
    "numpy.f2py": "compiles native code", "numpy.distutils": "compiles native code",
    "monai.bundle": "monai.bundle downloads, reads and runs further configs: code this audit does not see",
    "monai.apps.auto3dseg": "runs sub-processes", "monai.apps.nnunet": "runs sub-processes",
    "torchvision.datasets.utils": "downloads from the network",
}
#: a last path segment that is risky wherever it appears (also on objects the audit cannot name)
_RISKY_NAMES = {
    "optional_import": "optional_import imports any module named in a string",
    "instantiate": "instantiate builds any dotted path given as a string",
    "locate": "locate resolves any dotted path given as a string", "load_submodules": "imports modules by name",
    "run_cmd": "run_cmd runs a shell command", "system": "runs a shell command", "popen": "runs a shell command",
    "Popen": "runs a process", "load_library": "loads a native library",
    "download_url": "downloads from the network", "download_and_extract": "downloads from the network",
    "load_state_dict_from_url": "downloads from the network", "load_url": "downloads from the network",
    "urlretrieve": "downloads from the network", "urlopen": "opens a network connection",
    "exec_command": "runs a shell command",
}
#: standard-library modules an allowlisted module exposes by importing them (``torch.serialization.pickle``,
#: ``monai.utils.misc.subprocess``): reached as an attribute they are the module itself, so they are flagged anywhere
#: after the first segment of a chain (``io`` only past ``common.io``/``scripts.io``, medxfer's own module)
_STDLIB_ATTRIBUTES = frozenset({"os", "sys", "subprocess", "builtins", "shutil", "socket", "pickle", "marshal",
                                "ctypes", "importlib", "urllib", "http", "requests", "pty", "runpy", "pydoc",
                                "tempfile", "pathlib", "io", "inspect", "gc", "posix"})
_DANGEROUS_STRING = re.compile(r"^(os|sys|subprocess|builtins|shutil|socket|pickle|marshal|ctypes|importlib|urllib|"
                               r"http|requests|pty|posix|runpy|pydoc|code|multiprocessing|__builtin__)(\.\w+)*$|"
                               r"^(eval|exec|compile|__import__|system|popen|getattr)$")
_UNKNOWN = object()
_PLACEHOLDER = "_medxfer_ref_{}"


@dataclass
class Bindings:
    """Global names the configs' imports bind (``dist`` -> ``torch.distributed``), plus MONAI's defaults."""

    names: dict[str, set[str]] = field(default_factory=lambda: {k: {v} for k, v in MONAI_GLOBALS.items()})
    modules: set[str] = field(default_factory=lambda: set(MONAI_GLOBALS))  # bound by ``import``, not ``from``
    has_scripts: bool = False


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


def classify_path(dotted: str, bindings: Bindings) -> tuple[str, str]:
    """(category, reason or "") of a dotted path such as ``torch.hub.load`` or ``subprocess.run``."""
    parts = dotted.split(".")
    root = parts[0]
    dunder = next((p for p in parts if p.startswith("__")), None)
    if dunder:
        return "other", f"{dunder} reaches interpreter internals"
    stdlib = next((p for i, p in enumerate(parts[1:], 1) if p in _STDLIB_ATTRIBUTES
                   and not _is_submodule(".".join(["common" if root == "scripts" else root, *parts[1:i + 1]]))), None)
    if stdlib and (root in LIBRARIES or root in ("common", "scripts")):
        return root, f"reaches the standard-library module {stdlib} through {'.'.join(parts[:parts.index(stdlib)])}"
    if root in LIBRARIES:
        for prefix, reason in _RISKY_PATHS.items():
            if dotted == prefix or dotted.startswith(prefix + "."):
                return root, reason
    if root in LIBRARIES or root in ("common", "scripts"):
        risky = next((p for p in parts[1:] if p in _RISKY_NAMES), None)
        if risky:
            return root, _RISKY_NAMES[risky]
    if root in LIBRARIES:
        return root, ""
    if root in ("common", "scripts"):
        if root == "scripts" and not bindings.has_scripts:
            return root, "scripts is not vendored in this bundle (no scripts/ folder): any package called scripts"
        if len(parts) > 1 and parts[1] not in BUNDLE_LIBRARY:
            library = ", ".join(sorted(BUNDLE_LIBRARY))
            return root, f"{root}.{parts[1]} is medxfer tooling, not its bundle library ({library})"
        return root, ""
    if root == "os":
        return "stdlib", "" if dotted in OS_READS else f"{dotted}: os beyond reading the environment and path helpers"
    if root == "builtins" and len(parts) == 2 and parts[1] in _BUILTIN_REASONS:
        return "builtin", f"builtins module: {_BUILTIN_REASONS[parts[1]]}"
    if len(parts) == 1 and hasattr(builtins, root):
        reason = "" if root in SAFE_BUILTINS else _BUILTIN_REASONS.get(root, f"builtin {root} is not on the allowlist")
        return "builtin", reason
    allowed = ", ".join((*LIBRARIES, "common", "scripts"))
    return "other", f"{root!r} is outside the allowlist ({allowed}, os.environ/os.path)"


@functools.lru_cache(maxsize=1024)
def _is_submodule(dotted: str) -> bool:
    """Whether ``dotted`` (inside an allowlisted library) is a module of it, like ``monai.transforms.io``.

    Looks the name up with :func:`importlib.util.find_spec`, which imports the parent packages: allowlisted
    libraries only (``scripts`` is checked as ``common``), never the bundle's code.
    """
    try:
        spec = importlib.util.find_spec(dotted)
    except (ImportError, ValueError, AttributeError):
        return False
    return spec is not None and spec.name == dotted


@functools.lru_cache(maxsize=1)
def _locator() -> ComponentLocator:
    """MONAI's table of short ``_target_`` names (``Resized`` -> monai.transforms...), built once per process."""
    import monai  # noqa: F401  (MONAI scans the monai modules that are loaded)

    return ComponentLocator()


def target_path(name: str) -> str:
    """The dotted path MONAI instantiates for a literal ``_target_`` (``Resized`` -> its monai module)."""
    if "." in name:
        return name
    module = _locator().get_component_module_name(name)
    if isinstance(module, list):
        module = module[0]
    return f"{module}.{name}" if module else name


def _literal(node: ast.AST | None) -> Any:
    try:
        return ast.literal_eval(node) if node is not None else None
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _UNKNOWN


def _call_problem(dotted: str, args: dict[str, Any], positional: list[Any]) -> str:
    """Why a call of ``dotted`` with these (literal or ``_UNKNOWN``) arguments is unsafe, or ""."""
    if dotted in ("torch.load", "torch.serialization.load") and args.get("weights_only") is not True:
        return f"{dotted} without a literal weights_only=True unpickles arbitrary objects (code)"
    if dotted == "numpy.load":
        allow = args.get("allow_pickle", positional[2] if len(positional) > 2 else False)
        if allow is not False:
            return "numpy.load with allow_pickle unpickles arbitrary objects (code)"
    if dotted == "open":
        mode = args.get("mode", positional[1] if len(positional) > 1 else "r")
        if mode is _UNKNOWN or not isinstance(mode, str) or set(mode) & set("wax+"):
            return "open for writing (or with a mode the text does not fix) changes files"
    if "weights_only" in args and args["weights_only"] is not True:
        return f"{dotted}(weights_only=...) not a literal True: unpickles arbitrary objects (code)"
    if "allow_pickle" in args and args["allow_pickle"] is not False:
        return f"{dotted}(allow_pickle=...) unpickles arbitrary objects (code)"
    if "download" in args and args["download"] is not False:
        return f"{dotted}(download=...) downloads from the network"
    return ""


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
            elif (attr in _RISKY_NAMES or attr in _STDLIB_ATTRIBUTES) and (
                    not isinstance(base, ast.Name) or base.id in local or base.id in self.refs):
                self.flag(f".{attr}: {_RISKY_NAMES.get(attr, 'a standard-library module reached as an attribute')}")
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
            self.flag(_call_problem(dotted, args, positional))


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
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _DANGEROUS_STRING.match(node.value):
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
    args = {str(k): (v if not (isinstance(v, str) and v[:1] in "$@%") else _UNKNOWN)
            for k, v in component.items() if not str(k).startswith("_")}
    reasons, categories = [], []
    for dotted in paths:
        category, reason = classify_path(dotted, bindings)
        categories.append(category)
        for why in (reason, _call_problem(dotted, args, [])):
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
