"""Where a diffusers pipeline lives: one resolver for every stage that takes `--model`.

A model is named by a pipeline directory (with model_index.json), by an artifact directory that
holds one under `pipeline/` (what train-t2i / train-ddpm write), or by a hub id (paper profile).
"""

from __future__ import annotations

import json
from pathlib import Path

from diffsec.errors import DiffsecError


def resolve_pipeline(name: str, flag: str = "--model") -> str:
    """The directory to `from_pretrained`, or the hub id unchanged.

    A local path that holds no pipeline is an error here, before any artifact is started.
    """
    p = Path(name)
    for d in (p, p / "pipeline"):
        if (d / "model_index.json").is_file():
            return str(d)
    if p.exists() or name.startswith((".", "/")) or name.count("/") != 1:
        raise DiffsecError(f"{flag} {name}: not a diffusers pipeline directory (no model_index.json, "
                           "nor pipeline/model_index.json) or hub id")
    return name


def pipeline_class(name: str) -> str | None:
    """`_class_name` of a local pipeline (None for a hub id)."""
    f = Path(resolve_pipeline(name)) / "model_index.json"
    return json.loads(f.read_text()).get("_class_name") if f.is_file() else None

