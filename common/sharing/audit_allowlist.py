"""The allowlist of :mod:`common.sharing.audit`: which dotted paths a bundle's configs may reach, and why not.

A dotted path (``torch.hub.load``, ``subprocess.run``, ``monai.transforms.io.dictionary.LoadImaged``) is classified
by its root (monai, torch, torchvision, numpy, common, scripts, os, a builtin, anything else) and then checked for
what is risky inside the allowlisted libraries: paths that download, unpickle, compile or launch
(:data:`RISKY_PATHS`), names that turn strings into code anywhere (:data:`RISKY_NAMES`), and standard-library
modules reached as attributes of a library module (``torch.serialization.pickle``). :func:`call_problem` checks
the arguments of a call (``weights_only``, ``allow_pickle``, ``download``, ``open``'s mode).
"""

from __future__ import annotations

import builtins
import functools
import importlib.util
import re
from dataclasses import dataclass, field
from typing import Any

from monai.bundle.config_item import ComponentLocator

__all__ = ["BUNDLE_LIBRARY", "DANGEROUS_STRING", "LIBRARIES", "MONAI_GLOBALS", "OS_READS", "RISKY_NAMES",
           "RISKY_PATHS", "SAFE_BUILTINS", "STDLIB_ATTRIBUTES", "UNKNOWN", "Bindings", "call_problem",
           "classify_path", "target_path"]

#: MONAI's ConfigParser default globals (monai/bundle/config_parser.py ``_default_globals``)
MONAI_GLOBALS = {"monai": "monai", "torch": "torch", "np": "numpy", "numpy": "numpy"}
LIBRARIES = ("monai", "torch", "torchvision", "numpy")
#: medxfer's bundle library inside ``common`` (and vendored ``scripts``); the rest is tooling (servers, runners)
BUNDLE_LIBRARY = frozenset({"bundle_settings", "data", "engines", "explain", "finetune", "losses", "metrics",
                            "networks", "transforms", "errors", "io"})
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
RISKY_PATHS = {
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
RISKY_NAMES = {
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
STDLIB_ATTRIBUTES = frozenset({"os", "sys", "subprocess", "builtins", "shutil", "socket", "pickle", "marshal",
                                "ctypes", "importlib", "urllib", "http", "requests", "pty", "runpy", "pydoc",
                                "tempfile", "pathlib", "io", "inspect", "gc", "posix"})
DANGEROUS_STRING = re.compile(r"^(os|sys|subprocess|builtins|shutil|socket|pickle|marshal|ctypes|importlib|urllib|"
                               r"http|requests|pty|posix|runpy|pydoc|code|multiprocessing|__builtin__)(\.\w+)*$|"
                               r"^(eval|exec|compile|__import__|system|popen|getattr)$")
UNKNOWN = object()


@dataclass
class Bindings:
    """Global names the configs' imports bind (``dist`` -> ``torch.distributed``), plus MONAI's defaults."""

    names: dict[str, set[str]] = field(default_factory=lambda: {k: {v} for k, v in MONAI_GLOBALS.items()})
    modules: set[str] = field(default_factory=lambda: set(MONAI_GLOBALS))  # bound by ``import``, not ``from``
    has_scripts: bool = False



def classify_path(dotted: str, bindings: Bindings) -> tuple[str, str]:
    """(category, reason or "") of a dotted path such as ``torch.hub.load`` or ``subprocess.run``."""
    parts = dotted.split(".")
    root = parts[0]
    dunder = next((p for p in parts if p.startswith("__")), None)
    if dunder:
        return "other", f"{dunder} reaches interpreter internals"
    stdlib = next((p for i, p in enumerate(parts[1:], 1) if p in STDLIB_ATTRIBUTES
                   and not _is_submodule(".".join(["common" if root == "scripts" else root, *parts[1:i + 1]]))), None)
    if stdlib and (root in LIBRARIES or root in ("common", "scripts")):
        return root, f"reaches the standard-library module {stdlib} through {'.'.join(parts[:parts.index(stdlib)])}"
    if root in LIBRARIES:
        for prefix, reason in RISKY_PATHS.items():
            if dotted == prefix or dotted.startswith(prefix + "."):
                return root, reason
    if root in LIBRARIES or root in ("common", "scripts"):
        risky = next((p for p in parts[1:] if p in RISKY_NAMES), None)
        if risky:
            return root, RISKY_NAMES[risky]
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


def call_problem(dotted: str, args: dict[str, Any], positional: list[Any]) -> str:
    """Why a call of ``dotted`` with these (literal or ``UNKNOWN``) arguments is unsafe, or ""."""
    if dotted in ("torch.load", "torch.serialization.load") and args.get("weights_only") is not True:
        return f"{dotted} without a literal weights_only=True unpickles arbitrary objects (code)"
    if dotted == "numpy.load":
        allow = args.get("allow_pickle", positional[2] if len(positional) > 2 else False)
        if allow is not False:
            return "numpy.load with allow_pickle unpickles arbitrary objects (code)"
    if dotted == "open":
        mode = args.get("mode", positional[1] if len(positional) > 1 else "r")
        if mode is UNKNOWN or not isinstance(mode, str) or set(mode) & set("wax+"):
            return "open for writing (or with a mode the text does not fix) changes files"
    if "weights_only" in args and args["weights_only"] is not True:
        return f"{dotted}(weights_only=...) not a literal True: unpickles arbitrary objects (code)"
    if "allow_pickle" in args and args["allow_pickle"] is not False:
        return f"{dotted}(allow_pickle=...) unpickles arbitrary objects (code)"
    if "download" in args and args["download"] is not False:
        return f"{dotted}(download=...) downloads from the network"
    return ""


