"""`diffsec <stage> ...`: one subcommand per pipeline stage.

Stage modules in this package are discovered automatically; each registers its own
subcommands and imports heavy libraries only inside the command it runs, so `--help` is fast.
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except DiffsecError as e:
        print(f"diffsec {args.stage}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
