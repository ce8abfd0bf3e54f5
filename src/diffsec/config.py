"""Config validation: the whole config is checked before any job runs.

Order of the checks, each ending the run with ONE line `config error: <key>: <why>`:

1. every config file has each key once (YAML itself keeps the last of two silently);
2. `--config` values are typed as the schema wants them: Snakemake passes `dvc_track=false`
   and the scalars inside `worlds={...}` as strings, so a string where the schema wants no
   string is read as YAML (`false` -> False, `0.002` -> 0.002, `1e-3` -> 0.001; `key=` -> '');
3. the JSON schema (defaults filled in), whose `name` and `path` patterns keep every value
   that reaches a shell or a path harmless (no `$(...)`, no `..`, no leading `-`);
4. cross-key checks the schema cannot express: one attention flag per DDPM level, one
   cross-attention flag per UNet level, no more images asked for than a split has, a poison
   budget within the pixel scale, the figure's concept among the learned ones.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from diffsec.errors import DiffsecError

# images per split of the datasets whose sizes the config can ask for
SPLIT_SIZES = {"cifar10": {"train": 50000, "test": 10000}, "celeba": {"train": 162770, "test": 19962}}


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _fail(path, why: str) -> DiffsecError:
    return DiffsecError(f"config error: {_key(path)}: {why}")


def check_unique_keys(config_file: str | os.PathLike) -> None:
    """DiffsecError naming the first key a YAML/JSON config file gives twice."""
    path = Path(config_file)
    try:
        root = yaml.compose(path.read_text(), Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return  # Snakemake has read it already; what it could not read, it reported
    todo = [((), root)]
    while todo:
        keys, node = todo.pop()
        if isinstance(node, yaml.SequenceNode):
            todo += [((*keys, i), v) for i, v in enumerate(node.value)]
        if not isinstance(node, yaml.MappingNode):
            continue
        seen: dict[str, int] = {}
        for k, v in node.value:
            line = k.start_mark.line + 1
            if k.value in seen:
                raise _fail((*keys, k.value), f"given twice in {path.name} (lines {seen[k.value]} and {line})")
            seen[k.value] = line
            todo.append(((*keys, k.value), v))


def _resolve(node: dict, root: dict) -> dict:
    while isinstance(node, dict) and "$ref" in node:
        node = root["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def _typed(text: str, types: set[str]) -> Any:
    """A --config string read as the YAML value it spells (numbers YAML 1.1 misses included)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str) and types & {"number", "integer"}:
        try:
            return float(value)
        except ValueError:
            return text
    return text if value is None else value


def coerce(value: Any, node: dict, root: dict) -> Any:
    """`value` with every string the schema wants as a non-string read as YAML (containers in place)."""
    node = _resolve(node, root)
    types = {node["type"]} if isinstance(node.get("type"), str) else set(node.get("type", ()))
    if value is None and types == {"string"}:
        return ""
    if isinstance(value, str) and types and "string" not in types:
        value = _typed(value, types)
    if isinstance(value, dict):
        extra = node.get("additionalProperties")
        for k, v in value.items():
            sub = node.get("properties", {}).get(k, extra)
            if isinstance(sub, dict):
                value[k] = coerce(v, sub, root)
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        value[:] = [coerce(v, node["items"], root) for v in value]
    return value


def _schema_errors(config: dict, schema: dict) -> None:
    """Validate against the schema, filling defaults; DiffsecError for the first bad key."""
    import jsonschema

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
        why = f"{e.instance!r} {e.schema['x-message']}" if "x-message" in e.schema else e.message
        raise _fail(e.absolute_path, why)


def _levels(world: dict, path: tuple, channels: str, flags: str) -> None:
    if channels in world and flags in world and len(world[channels]) != len(world[flags]):
        raise _fail((*path, flags), f"{len(world[flags])} entries for the {len(world[channels])} levels "
                    f"of {_key((*path, channels))} (one per level)")


def cross_checks(config: dict[str, Any]) -> None:
    """The checks that relate two keys (or a key and a dataset); DiffsecError for the first failure."""
    worlds = config["worlds"]
    for name in ("ddpm", "ddpm_celeba"):
        if name in worlds:
            _levels(worlds[name], ("worlds", name), "channels", "attention")
    _levels(worlds["t2i"], ("worlds", "t2i"), "unet_channels", "unet_cross_attn")
    for dataset, sizes in SPLIT_SIZES.items():
        for split, n in sizes.items():
            asked = config["data"].get(dataset, {}).get(f"{split}_size", 0)
            if asked > n:
                raise _fail(("data", dataset, f"{split}_size"), f"{asked} is more than the {n} images of "
                            f"{dataset}'s {split} split")
    poison = config["szt"]["poison"]
    if poison.get("eps", 0) > poison.get("scale", float("inf")):
        raise _fail(("szt", "poison", "eps"), f"{poison['eps']} is above the pixel scale {poison['scale']} "
                    "(eps/scale is the L-inf budget on [0, 1] pixels)")
    _published(worlds)
    concepts, concept = config["szt"]["concepts"], config["szt"]["figures"].get("concept")
    if concepts and concept is not None and concept not in concepts:
        raise _fail(("szt", "figures", "concept"), f"{concept!r} is not among szt.concepts {concepts}")


def _published(worlds: dict[str, Any]) -> None:
    """A world's `published` build must be a catalog source."""
    from diffsec.catalog import SOURCES

    for name, world in worlds.items():
        src = world.get("published", "") if isinstance(world, dict) else ""
        if src and world.get("pretrained"):
            raise _fail(("worlds", name, "published"), f"{src!r} and pretrained {world['pretrained']!r} both "
                        "given: set one (published installs our build, pretrained loads a hub id or directory)")
        if src and src not in SOURCES:
            known = sorted(n for n in SOURCES if n.startswith("world_"))
            raise _fail(("worlds", name, "published"), f"{src!r} is not a catalog source (published worlds: {known})")


def validate_config(config: dict[str, Any], schema_path: str | os.PathLike,
                    configfiles: Iterable[str | os.PathLike] = ()) -> dict[str, Any]:
    """Check `config` (merged from `configfiles` and --config) in place: types coerced, defaults
    filled; raise DiffsecError naming the first bad key."""
    for f in configfiles:
        check_unique_keys(f)
    schema = yaml.safe_load(Path(schema_path).read_text())
    coerce(config, schema, schema)
    _schema_errors(config, schema)
    cross_checks(config)
    return config
