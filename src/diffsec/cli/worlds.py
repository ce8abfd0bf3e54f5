"""`diffsec install-world`: a published world (catalog source `world_<name>`) as the world's artifact."""

from __future__ import annotations

import argparse

from diffsec.cli.common import add_stage, open_stage


def register(sub: argparse._SubParsersAction) -> None:
    p = add_stage(sub, "install-world", install, "install a published world model (verified, unpacked)",
                  "Verify a published world archive (a fetch-source artifact of world_<NAME>) against the "
                  "catalog's sha256, refuse unsafe members (.., absolute paths, links), and unpack it into the "
                  "world's artifact; the manifest records the source and the manifest of the run that "
                  "built the world (built_by).")
    p.add_argument("--source", required=True, help="fetch-source artifact of world_<NAME> (or the .tar.gz)")
    p.add_argument("--world", required=True, help="world name, e.g. ddpm-cifar10, t2i-cifar10")


def install(args: argparse.Namespace) -> None:
    from diffsec.worlds import install_world

    st = open_stage(args, "install-world")
    st.add_inputs(source=args.source)
    with st.artifact() as art:
        art.extra.update(install_world(args.source, args.world, art.path))
    print(f"install-world: {args.world} -> {args.out}")
