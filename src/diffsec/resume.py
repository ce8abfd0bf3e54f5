"""Resume after a kill: one checkpoint per long stage, keyed by the settings and inputs that made it.

A long stage (world training, classifiers, backdoor fine-tuning, PGD poisons, textual inversion,
generation, sampling) keeps its state in `<out>.ckpt/state.pt` beside its output artifact.

    key = sha256(json([stage, params, inputs]))

where `params` are the run's resolved parameters without those that cannot change the result
(output path, thread count, device, checkpoint period) and `inputs` the sha256 of every input
file. A checkpoint is resumed only when its key equals the current run's; any other checkpoint
is from another run (a changed hyperparameter, seed or input) and is discarded with one log line,
so a rerun never continues an old run's state under a new run's manifest.

Writes are atomic (temporary file, then `os.replace`), and only tensors, numbers, strings and
lists/dicts of them are stored, so a checkpoint loads with `torch.load(weights_only=True)`.

Fault injection (tests and the soak check): with `DIFFSEC_KILL_AT_SAVE=n` in the environment, the
process SIGKILLs itself right after its n-th checkpoint write, as a kill from outside would. With
`DIFFSEC_HOLD_AFTER_SAVE=<name>:n`, a fresh (not resumed) run whose checkpoint directory is called
<name> logs `checkpoint: holding after save n` right after its n-th write and sleeps (up to 10 min),
so that a test can kill it from outside at a known point, e.g. `scancel` its Slurm job.

Every attempt is recorded in the checkpoint (`start_step`, `seconds`), and `record()` hands that
history to the final manifest: a resumed run says that it resumed, from which step, and how long
each attempt took in all.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Parameters that never change what a stage computes: left out of the key.
NOT_IN_KEY = ("out", "threads", "device", "ckpt_every", "func", "stage")
STATE = "state.pt"


def settings_key(stage: str, params: dict[str, Any], inputs: dict[str, str]) -> str:
    """sha256 over the stage name, its result-changing params and its input hashes."""
    kept = {k: v for k, v in params.items() if k not in NOT_IN_KEY}
    blob = json.dumps([stage, kept, inputs], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def checkpoint_dir(out: str | os.PathLike) -> Path:
    """Where the checkpoint of the artifact `out` lives: `<out>.ckpt` beside it."""
    out = Path(out)
    return out.with_name(out.name + ".ckpt")


class Checkpoint:
    """A keyed, atomically replaced training state; `path=None` disables checkpointing.

    `load()` returns the saved state (a dict) when its key matches, else None. `due(step)` says
    whether `save(state, step)` should run at this step. `clear()` removes the directory once the
    artifact is written. `record()` is the resume history for the manifest.
    """

    def __init__(self, path: str | os.PathLike | None, key: str, every: int = 0,
                 log: Callable[[str], None] | None = None):
        self.path = Path(path) if path is not None else None
        self.key, self.every = key, every
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self._t0 = time.time()
        self._history: list[dict[str, Any]] = []
        self.start_step = 0
        self._saves = 0

    @property
    def file(self) -> Path | None:
        return self.path / STATE if self.path is not None else None

    def load(self) -> dict[str, Any] | None:
        """The state of an earlier attempt of this very run, or None (fresh start)."""
        import torch

        f = self.file
        if f is None or not f.exists():
            return None
        try:
            state = torch.load(f, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - a torn or foreign file: start fresh, say so
            self.log(f"resume: {f} is unreadable ({type(e).__name__}); starting fresh")
            self.clear()
            return None
        if not isinstance(state, dict) or state.get("_key") != self.key:
            self.log(f"resume: {f} was written with other settings or inputs; starting fresh")
            self.clear()
            return None
        self._history = list(state.get("_history", []))
        self.start_step = int(state.get("_step", 0))
        self.log(f"resume: continuing from step {self.start_step} ({f})")
        return {k: v for k, v in state.items() if not k.startswith("_")}

    def due(self, step: int, total: int | None = None) -> bool:
        """True every `every` steps (never at the last step: the artifact is written then)."""
        if self.path is None or self.every <= 0 or step % self.every:
            return False
        return total is None or step < total

    def save(self, state: dict[str, Any], step: int) -> None:
        import torch

        if self.path is None:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        full = {**state, "_key": self.key, "_step": int(step),
                "_history": [*self._history, self._attempt()]}
        tmp = self.path / f"{STATE}.tmp-{os.getpid()}"
        torch.save(full, tmp)
        os.replace(tmp, self.file)
        self._saves += 1
        if self._saves == int(os.environ.get("DIFFSEC_KILL_AT_SAVE", "0") or 0):
            os.kill(os.getpid(), signal.SIGKILL)
        name, _, n = os.environ.get("DIFFSEC_HOLD_AFTER_SAVE", "").rpartition(":")
        if name == self.path.name and n.isdigit() and self._saves == int(n) and not self._history:
            self.log(f"checkpoint: holding after save {self._saves} (step {step}) until killed")
            time.sleep(600)

    def _attempt(self) -> dict[str, Any]:
        return {"start_step": self.start_step, "seconds": round(time.time() - self._t0, 3)}

    def record(self) -> dict[str, Any]:
        """For the manifest: every attempt (start step, seconds) and their total wall time."""
        attempts = [*self._history, self._attempt()]
        return {"resumed": len(attempts) > 1, "attempts": attempts,
                "wall_time_total_s": round(sum(a["seconds"] for a in attempts), 3)}

    def clear(self) -> None:
        if self.path is not None and self.path.exists():
            shutil.rmtree(self.path, ignore_errors=True)


def _part(ckpt: Checkpoint, c: int) -> Path:
    return ckpt.path / f"part-{c:05d}.pt"


def finished_parts(ckpt: Checkpoint) -> list[dict[str, Any]]:
    """The batch outputs an earlier attempt of this very run finished, in order (none after a
    fresh start): for stages whose batches are independent (sampling, scoring), so that a
    killed job resumes at the next batch without rewriting what it has."""
    import torch

    state = ckpt.load()
    return [] if state is None else [torch.load(_part(ckpt, c), weights_only=True)
                                     for c in range(int(state["parts"]))]


def keep_part(ckpt: Checkpoint, c: int, part: dict[str, Any], n_batches: int) -> None:
    """Batch c's outputs (a dict of tensors) go into the checkpoint directory once, a file each,
    then the state counts them; every `ckpt.every` batches, never after the last."""
    import torch

    if not ckpt.due(c + 1, n_batches):
        return
    ckpt.path.mkdir(parents=True, exist_ok=True)
    tmp = _part(ckpt, c).with_suffix(".tmp")
    torch.save(part, tmp)
    os.replace(tmp, _part(ckpt, c))
    ckpt.save({"parts": c + 1}, c + 1)


def disabled() -> Checkpoint:
    """A checkpoint that never saves or loads (library calls outside a stage, tests)."""
    return Checkpoint(None, key="")
