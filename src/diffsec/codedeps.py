"""The source files a stage runs, derived from the code: what a rule declares as its `code` input.

A stage is a subcommand `diffsec <stage>`; the CLI module that registers it is the one module
M in `<package>/cli/` whose source calls `add_parser("<stage>", ...)`, directly or through a
helper that passes one of its parameters on as the name (`add_stage(sub, "<stage>", ...)`), or
in a `for` loop over literal tuples that binds the name it passes. The files the stage runs
are the import closure of M inside the package: the smallest set S with M in S such that for
every module m in S,

- every package module m imports, anywhere in its source (function bodies included, since the
  CLIs import heavy libraries inside the command they run), is in S;
- `from a.b import c` counts as an import of `a.b.c` when `c` is a submodule, else of `a.b`;
  relative imports resolve against m's package (`from ..x import y` in `pkg.sub.m` is
  `pkg.x.y` or `pkg.x`);
- importing `a.b.c` executes `a/__init__.py` and `a/b/__init__.py`, so those are in S too.

A package's data files (CSV, TSV, JSON, YAML or text files beside its `__init__.py`, e.g. the
paper values `paper/*.csv` read through importlib.resources) count as part of that package. The
closure over-approximates (a module that registers three stages gives all three the imports
of each), never under-approximates a static import; dynamic imports (`importlib.import_module`)
are not seen.
"""

from __future__ import annotations

import ast
import os
from functools import cache
from pathlib import Path

from diffsec.errors import DiffsecError

PACKAGE = "diffsec"
DATA_SUFFIXES = (".csv", ".tsv", ".json", ".yaml", ".yml", ".txt")  # package data (not editor litter)


def _stamp(path: Path) -> tuple[str, int, int]:
    """(path, mtime in ns, size): the key under which a file's derived facts are cached, so an
    edited file is read again within one process."""
    st = path.stat()
    return str(path), st.st_mtime_ns, st.st_size


def _parse(path: Path) -> ast.Module:
    return _parse_stamped(_stamp(path))


@cache
def _parse_stamped(stamp: tuple[str, int, int]) -> ast.Module:
    return ast.parse(Path(stamp[0]).read_text(), filename=stamp[0])


def module_file(root: Path, module: str) -> Path | None:
    """`a.b.c` -> root/a/b/c.py or root/a/b/c/__init__.py; None when it is not a module."""
    base = Path(root, *module.split("."))
    for f in (base.with_suffix(".py"), base / "__init__.py"):
        if f.is_file():
            return f
    return None


def _callee(call: ast.Call) -> str | None:
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None


def _stage_arg(call: ast.Call, index: int, param: str) -> ast.expr | None:
    """The argument a call passes for a registrar's stage-name parameter."""
    if len(call.args) > index and not any(isinstance(a, ast.Starred) for a in call.args[:index + 1]):
        return call.args[index]
    return next((k.value for k in call.keywords if k.arg == param), None)


def _registrars(trees: list[ast.Module]) -> dict[str, tuple[int, str]]:
    """Functions that register a subcommand named by one of their parameters: `add_parser` (its
    first argument) and, to a fixpoint, every wrapper that forwards a parameter to one of them."""
    found = {"add_parser": (0, "name")}
    defs = [d for t in trees for d in ast.walk(t) if isinstance(d, ast.FunctionDef)]
    changed = True
    while changed:
        changed = False
        for d in defs:
            params = [a.arg for a in (*d.args.posonlyargs, *d.args.args)]
            for call in (c for c in ast.walk(d) if isinstance(c, ast.Call) and _callee(c) in found):
                arg = _stage_arg(call, *found[_callee(call)])
                if isinstance(arg, ast.Name) and arg.id in params and d.name not in found:
                    found[d.name] = (params.index(arg.id), arg.id)
                    changed = True
    return found


def _loop_values(loop: ast.For, name: str) -> list[str]:
    """The string literals a `for` over a literal tuple/list binds to `name` (alone or unpacked)."""
    target, elts = loop.target, getattr(loop.iter, "elts", None)
    if isinstance(target, ast.Name) and target.id == name:
        index = None
    elif isinstance(target, (ast.Tuple, ast.List)) and name in [getattr(t, "id", None) for t in target.elts]:
        index = [getattr(t, "id", None) for t in target.elts].index(name)
    else:
        return []
    values = [e if index is None else getattr(e, "elts", [None] * (index + 1))[index] for e in elts or []]
    return [v.value for v in values if isinstance(v, ast.Constant) and isinstance(v.value, str)]


def _registered(tree: ast.Module, registrars: dict[str, tuple[int, str]]) -> list[str]:
    """Stage names a module registers: literal arguments of registrar calls, or the literals a
    `for` loop around the call binds to the name it passes."""
    def calls(node):
        return [c for c in ast.walk(node) if isinstance(c, ast.Call) and _callee(c) in registrars]

    names = []
    for call in calls(tree):
        arg = _stage_arg(call, *registrars[_callee(call)])
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            names.append(arg.value)
    for loop in (n for n in ast.walk(tree) if isinstance(n, ast.For)):
        for call in calls(loop):
            arg = _stage_arg(call, *registrars[_callee(call)])
            if isinstance(arg, ast.Name):
                names += _loop_values(loop, arg.id)
    return names


def stage_modules(root: str | os.PathLike, package: str = PACKAGE) -> dict[str, str]:
    """{stage: dotted name of the CLI module that registers it}: every call of `add_parser`, or of
    a function forwarding its parameter there, with a literal stage name (or a name a `for` loop
    over literals binds), in `<package>/cli/*.py`. Cached per process on the CLI files' paths,
    mtimes and sizes: the workflow asks once per rule."""
    files = sorted(f for f in Path(root, package, "cli").glob("*.py") if not f.name.startswith("."))
    return dict(_stage_modules(tuple(_stamp(f) for f in files), package))


@cache
def _stage_modules(stamps: tuple[tuple[str, int, int], ...], package: str) -> dict[str, str]:
    files = [Path(st[0]) for st in stamps]
    registrars = _registrars([_parse(f) for f in files])
    out: dict[str, str] = {}
    for f in files:
        module = f"{package}.cli.{f.stem}"
        for stage in _registered(_parse(f), registrars):
            if out.get(stage, module) != module:
                raise DiffsecError(f"stage {stage!r} is registered by both {out[stage]} and {module}")
            out[stage] = module
    return out


def _from_base(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a `from X import ...` statement names (X resolved if relative)."""
    if not node.level:
        return node.module or ""
    parts = module.split(".") if is_package else module.split(".")[:-1]
    parts = parts[:len(parts) - (node.level - 1)]
    return ".".join(parts + ([node.module] if node.module else []))


def imported_modules(root: Path, module: str, package: str = PACKAGE) -> set[str]:
    """Modules of `package` that `module`'s source imports anywhere (unresolved names dropped)."""
    path = module_file(root, module)
    return set(_imported_modules(str(root), module, package, _stamp(path)))


@cache
def _imported_modules(root: str, module: str, package: str, stamp: tuple[str, int, int]) -> frozenset[str]:
    path = Path(stamp[0])
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(_parse(path)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _from_base(module, is_package, node)
            for a in node.names:
                sub = f"{base}.{a.name}"
                found.add(sub if a.name != "*" and module_file(root, sub) else base)
    return frozenset(m for m in found if m.split(".")[0] == package)


def _with_parents(module: str) -> list[str]:
    """`a.b.c` -> [a, a.b, a.b.c]: importing a module runs each enclosing package first."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def import_closure(root: str | os.PathLike, module: str, package: str = PACKAGE) -> list[Path]:
    """Sorted source (and package data) files that importing `module` can execute or read."""
    root = Path(root)
    seen: set[str] = set()
    todo = [module]
    while todo:
        for m in _with_parents(todo.pop()):
            if m in seen or module_file(root, m) is None:
                continue
            seen.add(m)
            todo.extend(imported_modules(root, m, package))
    files = {module_file(root, m) for m in seen}
    for f in list(files):
        if f.name == "__init__.py":
            files.update(p for p in f.parent.iterdir() if p.suffix in DATA_SUFFIXES and not p.name.startswith("."))
    return sorted(files)


def stage_code(root: str | os.PathLike, stage: str, package: str = PACKAGE) -> list[Path]:
    """The files `diffsec <stage>` runs: the import closure of the CLI module that registers it."""
    modules = stage_modules(root, package)
    if stage not in modules:
        raise DiffsecError(f"no CLI module registers stage {stage!r} (add_parser({stage!r}) in {package}/cli/)")
    return import_closure(root, modules[stage], package)
