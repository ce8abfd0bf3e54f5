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

Within the registering module itself a stage runs only part of the code: the function its
subparser dispatches to (`set_defaults(func=f)`, directly on the `add_parser` result, on the
variable holding it, or through a registrar such as `add_stage(sub, name, f)`). So S starts from
the imports of the module's top-level statements, of the functions that register stages, and of
every module-level function or class reachable from f by name (transitively); a module listing
several stages no longer gives each the imports of all (a figure stage's plotting imports are not
a fit stage's code). Where the scan cannot tell f (a pattern it does not know), the whole module's
imports count, as before. Modules reached from there count whole.

A package's data files (CSV, TSV, JSON, YAML or text files beside its `__init__.py`, e.g. the
paper values `paper/*.csv` read through importlib.resources) count as part of that package. The
closure over-approximates (a stage whose function the scan cannot tell gets its whole module's
imports, and a helper reached by name counts whole even where only one branch of it runs), never
under-approximates a static import; dynamic imports (`importlib.import_module`) are not seen.
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
    return dict(_stage_modules(_cli_stamps(root, package), package))


def _cli_stamps(root: str | os.PathLike, package: str) -> tuple[tuple[str, int, int], ...]:
    files = sorted(f for f in Path(root, package, "cli").glob("*.py") if not f.name.startswith("."))
    return tuple(_stamp(f) for f in files)


@cache
def _cli_registrars(stamps: tuple[tuple[str, int, int], ...]) -> dict[str, tuple[int, str]]:
    return _registrars([_parse(Path(st[0])) for st in stamps])


@cache
def _stage_modules(stamps: tuple[tuple[str, int, int], ...], package: str) -> dict[str, str]:
    files = [Path(st[0]) for st in stamps]
    registrars = _cli_registrars(stamps)
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
    return _imports_in([_parse(path)], root, module, path.name == "__init__.py", package)


def _imports_in(nodes: list[ast.AST], root: str | os.PathLike, module: str, is_package: bool,
                package: str) -> frozenset[str]:
    """Modules of `package` that the import statements anywhere inside `nodes` name."""
    found: set[str] = set()
    for node in (n for top in nodes for n in ast.walk(top)):
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
    return _closure(Path(root), [module], [], package)


def _closure(root: Path, whole: list[str], partial: list[tuple[str, frozenset[str]]], package: str) -> list[Path]:
    """Files of the modules in `whole` and of each `partial` module (given with the imports of the
    part of it that runs), and of everything they import, transitively and whole."""
    seen: set[str] = set()
    todo = list(whole)
    for module, imports in partial:
        seen.add(module)
        todo += [*_with_parents(module), *imports]
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


def _func_of_call(call: ast.Call, funcs: dict[str, int]) -> ast.expr | None:
    """The function a registrar call passes on to `set_defaults(func=...)`, if it is a wrapper that
    does (`funcs`: wrapper -> index of its function parameter)."""
    name = _callee(call)
    if name not in funcs:
        return None
    return _stage_arg(call, funcs[name], "func")


def _set_defaults_func(call: ast.Call) -> ast.expr | None:
    """`<x>.set_defaults(func=F)` -> F."""
    if _callee(call) == "set_defaults":
        return next((k.value for k in call.keywords if k.arg == "func"), None)
    return None


def _func_params(trees: list[ast.Module], registrars: dict[str, tuple[int, str]]) -> dict[str, int]:
    """Registrar wrappers that also dispatch to one of their parameters: wrapper -> its index."""
    out = {}
    for d in (d for t in trees for d in ast.walk(t) if isinstance(d, ast.FunctionDef) and d.name in registrars):
        params = [a.arg for a in (*d.args.posonlyargs, *d.args.args)]
        for call in (c for c in ast.walk(d) if isinstance(c, ast.Call)):
            f = _set_defaults_func(call)
            if isinstance(f, ast.Name) and f.id in params:
                out[d.name] = params.index(f.id)
    return out


def _stage_funcs(tree: ast.Module, registrars: dict[str, tuple[int, str]], funcs: dict[str, int]) -> dict[str, str]:
    """{stage: name of the function it dispatches to} for the registrations the scan can pair with
    their `set_defaults(func=...)`: through a dispatching registrar, chained on the registrar call,
    or on the variable the call was assigned to (the next `set_defaults` on it in source order).
    Stages registered in loops or otherwise are left out (their module counts whole)."""
    def literal(call):
        arg = _stage_arg(call, *registrars[_callee(call)])
        return arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else None

    out: dict[str, str] = {}
    holder: dict[str, str] = {}   # variable -> stage of the registrar call last assigned to it
    nodes = sorted((n for n in ast.walk(tree) if isinstance(n, (ast.Call, ast.Assign))),
                   key=lambda n: (n.lineno, n.col_offset, isinstance(n, ast.Call)))
    for n in nodes:
        if isinstance(n, ast.Assign):
            call = n.value
            if isinstance(call, ast.Call) and _callee(call) in registrars and literal(call):
                for t in n.targets:
                    if isinstance(t, ast.Name):
                        holder[t.id] = literal(call)
            continue
        if _callee(n) in registrars and literal(n):
            f = _func_of_call(n, funcs)
            if isinstance(f, ast.Name):
                out[literal(n)] = f.id
        f = _set_defaults_func(n)
        if isinstance(f, ast.Name) and isinstance(n.func, ast.Attribute):
            target = n.func.value
            if isinstance(target, ast.Name) and target.id in holder:
                out[holder.pop(target.id)] = f.id
            elif isinstance(target, ast.Call) and _callee(target) in registrars and literal(target):
                out[literal(target)] = f.id
    return out


def stage_functions(root: str | os.PathLike, package: str = PACKAGE) -> dict[str, str]:
    """{stage: the registering module's function its subparser runs}, where the scan can tell."""
    return dict(_stage_functions(_cli_stamps(root, package), package))


@cache
def _stage_functions(stamps: tuple[tuple[str, int, int], ...], package: str) -> dict[str, str]:
    trees = [_parse(Path(st[0])) for st in stamps]
    registrars = _cli_registrars(stamps)
    funcs = _func_params(trees, registrars)
    out: dict[str, str] = {}
    for tree in trees:
        out.update(_stage_funcs(tree, registrars, funcs))
    return out


def _reachable(tree: ast.Module, start: str, registrars: dict[str, tuple[int, str]],
               others: set[str]) -> list[ast.AST]:
    """The parts of a module that run for the stage dispatching to `start`: its top-level
    statements (defs and classes aside), the functions that register stages, and every
    module-level def or class reachable by name from those and from `start`, except that the
    registering functions' mentions of `others` (the functions other stages dispatch to, named
    there only to be registered) are not followed."""
    defs = {d.name: d for d in tree.body if isinstance(d, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    top = [n for n in tree.body if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    registering = {name for name, d in defs.items()
                   if any(isinstance(c, ast.Call) and _callee(c) in registrars for c in ast.walk(d))}
    todo, seen = [start, *registering, *(n.id for t in top for n in ast.walk(t) if isinstance(n, ast.Name))], set()
    while todo:
        name = todo.pop()
        if name in seen or name not in defs:
            continue
        seen.add(name)
        skip = others - {start} if name in registering else set()
        todo += [n.id for n in ast.walk(defs[name]) if isinstance(n, ast.Name) and n.id not in skip]
    return top + [defs[n] for n in sorted(seen)]


def stage_code(root: str | os.PathLike, stage: str, package: str = PACKAGE) -> list[Path]:
    """The files `diffsec <stage>` runs: the import closure of the part of the registering CLI
    module that runs for the stage (module docstring), or of the whole module."""
    stamps = _cli_stamps(root, package)   # one stat of the CLI files for the three cached scans
    modules = _stage_modules(stamps, package)
    if stage not in modules:
        raise DiffsecError(f"no CLI module registers stage {stage!r} (add_parser({stage!r}) in {package}/cli/)")
    funcs = _stage_functions(stamps, package)
    module, func = modules[stage], funcs.get(stage)
    if func is None:
        return import_closure(root, module, package)
    path = module_file(Path(root), module)
    registrars = _cli_registrars(stamps)
    others = {f for s, f in funcs.items() if modules.get(s) == module}
    imports = _imports_in(_reachable(_parse(path), func, registrars, others), root, module,
                          path.name == "__init__.py", package)
    return _closure(Path(root), [], [(module, imports)], package)
