"""`diffsec <stage> ...`: one subcommand per pipeline stage.

Stage modules in this package are discovered automatically; each registers its own
subcommands and imports heavy libraries only inside the command it runs, so `--help` is fast.
Every expected failure ends the same way: one stderr line `diffsec <stage>: error: <what> (<where>)`
and exit status 2 (argparse's own usage errors also exit 2, after the usage line).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import diffsec.cli as cli_pkg
from diffsec import __version__
from diffsec.errors import DiffsecError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diffsec", description="Reproducible security experiments on diffusion models.")
    parser.add_argument("--version", action="version", version=f"diffsec {__version__}")
    sub = parser.add_subparsers(dest="stage", metavar="<stage>", required=True)
    for mod in sorted(pkgutil.iter_modules(cli_pkg.__path__), key=lambda m: m.name):
        if mod.name in ("main", "common"):
            continue
        module = importlib.import_module(f"diffsec.cli.{mod.name}")
        if hasattr(module, "register"):
            module.register(sub)
    return parser


def _file_error(e: OSError) -> str:
    """`<what> (<where>)` of an OS error about a named file, e.g. a missing or unreadable input."""
    where = f"{e.filename} -> {e.filename2}" if e.filename2 is not None else str(e.filename)
    return f"{e.strerror or type(e).__name__} ({where})"


def main(argv: list[str] | None = None) -> int:
    """Run one stage; an expected failure is ONE stderr line `diffsec <stage>: error: ...`, rc 2.

    Expected failures are DiffsecError and OS errors that name a file (a missing, unreadable or
    unwritable path given to the stage); anything else is a bug and keeps its traceback. Inside a
    Snakemake run with a warm-start server (`diffsec.warm`) the stage runs in a child forked from it.
    """
    from diffsec import warm

    code = warm.forward(sys.argv[1:] if argv is None else list(argv))
    if code is not None:
        return code
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except DiffsecError as e:
        msg = " ".join(str(e).splitlines())
    except OSError as e:
        if e.filename is None:
            raise
        msg = _file_error(e)
    else:
        return 0
    print(f"diffsec {args.stage}: error: {msg}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
