"""Config validation: the whole config is checked against the JSON schema before any job runs.

A bad value ends the run with ONE line naming the key, e.g.
`config error: worlds.ddpm.steps: -5 is less than the minimum of 1`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from diffsec.errors import DiffsecError


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def validate_config(config: dict[str, Any], schema_path: str | os.PathLike) -> dict[str, Any]:
    """Validate (filling schema defaults); raise DiffsecError naming the first bad key."""
    import jsonschema

    schema = yaml.safe_load(Path(schema_path).read_text())
    validator_cls = jsonschema.validators.validator_for(schema)

    def set_defaults(validator, properties, instance, schema):
        for prop, sub in properties.items():
            if isinstance(instance, dict) and "default" in sub:
                instance.setdefault(prop, sub["default"])
        yield from validator_cls.VALIDATORS["properties"](validator, properties, instance, schema)

    filling = jsonschema.validators.extend(validator_cls, {"properties": set_defaults})
    errors = sorted(filling(schema).iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        # jsonschema reports unknown keys at the parent: name them so typos are obvious.
        raise DiffsecError(f"config error: {_key(e.absolute_path)}: {e.message}")
    return config
