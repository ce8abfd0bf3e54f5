"""One open stage run: seed and threads set, device chosen, checkpoint keyed, artifact written.

Every stage CLI does the same four things around its one library call; `Stage` does them once:

    st = Stage("train-ddpm", out, params, seed=0, device="auto", threads=2)
    ckpt = st.checkpoint(inputs={"data": path}, every=250)   # keyed by params + input hashes
    ...library call(..., ckpt=ckpt, device=st.device)...
    with st.artifact() as art:                              # atomic; manifest records the
        ...write files into art...                           # inputs, device, resume history
    # on success the checkpoint is cleared

It knows no flags (the CLI builds it from its namespace with `cli.common.open_stage`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from diffsec.artifact import Artifact, artifact_dir, check_out, hash_path
from diffsec.resume import Checkpoint, checkpoint_dir, settings_key


class Stage:
    def __init__(self, name: str, out: str | os.PathLike, params: dict[str, Any], *, seed: int = 0,
                 device: str = "auto", threads: int = 0):
        from diffsec.device import pick_device, seed_everything

        self.name, self.out, self.params, self.seed = name, Path(out), params, seed
        self.paths: list[Path] = []
        check_out(self.out, name)  # '.', '..', a symlink, another stage's artifact: refused up front
        seed_everything(seed, threads or None)
        self.device = pick_device(device)
        self.inputs: dict[str, str] = {}
        self.ckpt: Checkpoint | None = None

    def add_inputs(self, **paths: str | os.PathLike | None) -> dict[str, str]:
        """Hash input files/directories (None skipped) into the manifest and the checkpoint key.

        An input may not be --out, nor lie inside it, nor hold it: checked here, before any work.
        """
        given = {k: Path(p) for k, p in paths.items() if p is not None and str(p) != ""}
        check_out(self.out, self.name, [*self.paths, *given.values()])
        for k, p in given.items():
            self.inputs[k] = hash_path(p)
        self.paths += [p for p in given.values() if p.exists()]
        return self.inputs

    def checkpoint(self, every: int, **inputs: str | os.PathLike | None) -> Checkpoint:
        """The stage's keyed checkpoint at `<out>.ckpt` (inputs hashed into its key)."""
        self.add_inputs(**inputs)
        self.ckpt = Checkpoint(checkpoint_dir(self.out), settings_key(self.name, self.params, self.inputs),
                               every=every)
        return self.ckpt

    @contextlib.contextmanager
    def artifact(self) -> Iterator[Artifact]:
        """The output artifact; on success its checkpoint (if any) is removed."""
        with artifact_dir(self.out, self.name, self.params, protect=self.paths) as art:
            art.device = str(self.device)
            art.inputs.update(self.inputs)
            yield art
            if self.ckpt is not None:
                art.extra["resume"] = self.ckpt.record()
        if self.ckpt is not None:
            self.ckpt.clear()
