"""Flags every stage shares, and the setup they imply."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def add_common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("run")
    g.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    g.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    g.add_argument("--threads", type=int, default=0, help="torch CPU threads, 0 = library default")


def setup(args: argparse.Namespace):
    """Seed everything, set threads, return the chosen torch device."""
    from diffsec.device import pick_device, seed_everything

    seed_everything(args.seed, args.threads or None)
    return pick_device(args.device)


def open_stage(args: argparse.Namespace, name: str, skip: tuple[str, ...] = ()):
    """The library `Stage` of this run: seed/threads set, device picked, params recorded."""
    from diffsec.stage import Stage

    return Stage(name, args.out, params_of(args, skip), seed=args.seed, device=args.device,
                 threads=args.threads)


def params_of(args: argparse.Namespace, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The resolved parameters of a run, for its manifest (paths and callables left out)."""
    out = {}
    for k, v in vars(args).items():
        if k in ("func", "stage", *skip) or callable(v):
            continue
        out[k] = _plain(v)
    json.dumps(out)
    return out


def _plain(v: Any) -> Any:
    """A flag value as JSON: numbers, strings, booleans and lists of them; anything else (a Path) as str."""
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v if isinstance(v, (int, float, str, bool, type(None), dict)) else str(v)


def json_arg(text: str) -> Any:
    """argparse type for a JSON value (lists of channels, dicts of options)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON: {text!r} ({e.msg})") from None


def named_paths(items: list[str], flag: str) -> dict[str, str]:
    """NAME=PATH arguments -> {name: path}, in order; a malformed or repeated name is an error."""
    from diffsec.errors import DiffsecError

    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise DiffsecError(f"{flag}: expected NAME=PATH, got {item!r}")
        if name in out:
            raise DiffsecError(f"{flag}: {name!r} given twice")
        out[name] = path
    return out


def artifact_npz(directory: Path, name: str, flag: str, stage: str) -> dict:
    """The arrays of `<directory>/<name>` that stage `stage` writes, or one line naming the flag."""
    import numpy as np

    from diffsec.errors import DiffsecError

    f = directory / name
    if not f.is_file():
        raise DiffsecError(f"{flag} {directory}: not a {stage} artifact (no {name})")
    with np.load(f, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def add_stage(sub: argparse._SubParsersAction, name: str, func, summary: str, description: str):
    """A stage's subparser with --out and the common run flags."""
    p = sub.add_parser(name, help=summary, description=description)
    p.add_argument("--out", type=Path, required=True,
                   help=f"artifact directory to write (new, or an earlier {name} one)")
    add_common(p)
    p.set_defaults(func=func)
    return p


def positive(**values: int) -> None:
    """Each flag value is a finite number > 0 (the one check, `models.checks.positive`, named by flag)."""
    from types import SimpleNamespace

    from diffsec.models.checks import positive as check

    flags = {f"--{name.replace('_', '-')}": v for name, v in values.items()}
    check(SimpleNamespace(**flags), *flags)
