"""What a cell was asked for, in a canonical form that records and tables share without Hydra.

A cell is made by a list of overrides (`experiment=table3 net=mlp4 method=nsr
seed_offset=5`). Hydra composes its config from them once, when the cell
runs; its record keeps `choices` (every config group's option, as Hydra chose
it) and `overrides` (that list). A table or verdict names its cells by
override lists too, and finds each one's run by comparing the two lists'
canonical calls (`canonical`), read from the configs as plain YAML:

* where or how a cell runs (results_dir, threads, device, ...) says nothing;
* a recipe overlay (`experiment=`, `profile=`) stands for what its file
  sets: its `override /group: option` entries and its plain settings, which
  the list's own overrides win over (an experiment is compared by its
  settings, so a cell run for the verdict and the same cell of Table 1 are
  one cell);
* a group option or a setting equal to its default (the primary config's, or
  the chosen group file's) is dropped: `base=xavier` and `seed_offset=0` say
  nothing.

Equal calls over the same configs compose to the same config. The converse
does not hold (`hidden=[256,100]` and `net=mlp4` are different calls for one
network), so a run is missed rather than mistaken for another; the records'
own configs are checked against the call as well (`settings_agree`).
"""

from __future__ import annotations

import functools
from pathlib import Path

import yaml

from .. import CONFIG_DIR

_MISSING = object()
# Overlays that stand for the settings they make rather than being a table coordinate.
RECIPES = ("experiment", "profile")
# Keys that say where or how a cell runs, or how it is read, not what it computes.
# `choices` and `overrides` are the call itself, kept in a record beside its config.
RUNTIME = ("results_dir", "device", "threads", "progress", "stack_cells", "failed_error", "table", "hydra",
           "checkpoint_every",
           "data.root", "data.download", "data.path", "choices", "overrides")
_OVERLAY_KEYS = ("defaults", "hydra", "table")  # parts of an overlay file that set no run setting


def split_override(override: str) -> tuple[str, object]:
    """(`init.tol`, 0.1) of `++init.tol=0.1`: the key (prefixes and `@package` dropped) and its YAML value."""
    key, _, text = override.lstrip("~+").partition("=")
    value = yaml.safe_load(text) if text else None
    if isinstance(value, str):  # YAML 1.1 reads `1e-06` as a string; Hydra's grammar, like Python, as a float
        try:
            value = float(value) if value.strip().lower() not in ("inf", "-inf", "nan") else value
        except ValueError:
            pass
    return key.partition("@")[0], value


def flat(tree: dict, prefix: str = "") -> dict[str, object]:
    """A nested dict as {dotted path: leaf}."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


@functools.cache
def _tree(config_dir: str) -> tuple[frozenset, dict, dict]:
    """(the config groups, the primary config's default option per group, its plain settings by dotted path)."""
    root = Path(config_dir)
    groups = frozenset(p.name for p in root.iterdir() if p.is_dir() and p.name != "hydra")
    primary = yaml.safe_load((root / "config.yaml").read_text())
    defaults = {}
    for entry in primary.get("defaults", []):
        if isinstance(entry, dict):
            for key, option in entry.items():
                if not key.startswith("override") and "/" not in key:
                    defaults[key] = None if option is None else str(option)
    settings = flat({k: v for k, v in primary.items() if k not in _OVERLAY_KEYS})
    return groups, defaults, settings


@functools.cache
def _option(config_dir: str, group: str, option: str | None) -> dict:
    """A group option's file as plain YAML ({} for none, or for an option that has no file)."""
    if option is None:
        return {}
    path = Path(config_dir) / group / f"{option}.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def _overlay(content: dict) -> tuple[dict, dict]:
    """(groups, settings) an overlay file sets: its `override /group: option` entries and its plain keys."""
    groups = {}
    for entry in content.get("defaults", []) or []:
        if isinstance(entry, dict):
            for key, option in entry.items():
                if key.startswith("override /"):
                    groups[key.removeprefix("override /")] = None if option is None else str(option)
    return groups, flat({k: v for k, v in content.items() if k not in _OVERLAY_KEYS})


def _default(config_dir: str, key: str, groups: dict) -> object:
    """The value `key` has when nothing names it: the primary config's, or the chosen group file's."""
    _, defaults, settings = _tree(config_dir)
    group, _, rest = key.partition(".")
    if rest and group in defaults:
        option = groups.get(group, defaults[group])
        content = flat(_option(config_dir, group, option))
        if rest in content:
            return content[rest]
    return settings.get(key, _MISSING)


def _named(overrides: list[str], config_dir: str) -> tuple[dict, dict]:
    """(group options, settings) the overrides name themselves; a deleted setting (`~key`) is "~"."""
    known_groups = _tree(config_dir)[0]
    groups, settings = {}, {}
    for override in overrides:
        key, value = split_override(override)
        if key.startswith("hydra"):
            continue
        if key in known_groups:
            groups[key] = None if value is None else str(value)
        else:
            settings[key] = "~" if override.startswith("~") else value
    return groups, settings


def _resolve(overrides: list[str], config_dir: str) -> tuple[dict, dict]:
    """(groups, settings) a list of overrides names, its recipes expanded; the list's own overrides win."""
    _, defaults, _ = _tree(config_dir)
    groups, settings = _named(overrides, config_dir)
    for recipe in RECIPES:
        option = groups.pop(recipe, defaults.get(recipe))
        overlay_groups, overlay_settings = _overlay(_option(config_dir, recipe, option))
        for group, value in overlay_groups.items():
            groups.setdefault(group, value)
        for key, value in overlay_settings.items():
            settings.setdefault(key, value)
    return groups, settings


def canonical(overrides: list[str], free: tuple[str, ...] = (), config_dir: Path = CONFIG_DIR) -> dict:
    """A cell's call as {group or dotted setting: value}: what its overrides ask for, and nothing else.

    `free` settings (dotted paths, e.g. the budget's `seeds`) are left out:
    the caller lets them take any value.
    """
    config_dir = str(config_dir)
    _, defaults, _ = _tree(config_dir)
    groups, settings = _resolve(overrides, config_dir)
    out = {g: v for g, v in groups.items() if v != defaults.get(g)}
    for key, value in settings.items():
        if key in free or key in RUNTIME:
            continue
        if value != _default(config_dir, key, groups):
            out[key] = value
    return out


def setting(overrides: list[str], key: str, config_dir: Path = CONFIG_DIR):
    """The value a plain setting (`results_dir`, `seeds`, `data.train_limit`) takes under `overrides`."""
    config_dir = str(config_dir)
    groups, settings = _resolve(overrides, config_dir)
    if key in settings:
        return settings[key]
    value = _default(config_dir, key, groups)
    if value is _MISSING:
        raise KeyError(key)
    return value


def choice(overrides: list[str], group: str, config_dir: Path = CONFIG_DIR) -> str | None:
    """The option of `group` (`data`, `init`, ...) that `overrides` select, its default if they name none."""
    groups, _ = _resolve(overrides, str(config_dir))
    return groups.get(group, _tree(str(config_dir))[1].get(group))


@functools.cache
def _is_global(config_dir: str, group: str, option: str) -> bool:
    """Whether a group option's file is an overlay (`# @package _global_`) rather than its group's settings."""
    path = Path(config_dir) / group / f"{option}.yaml"
    return path.is_file() and "# @package _global_" in path.read_text().split("\n", 1)[0]


def _option_settings(config_dir: str, group: str, option: str) -> dict:
    """A group option's own settings, after the same-group options its defaults list names (`tie` is `ibci` plus)."""
    content = _option(config_dir, group, option)
    out = {}
    for entry in content.get("defaults", []) or []:
        if isinstance(entry, str) and entry != "_self_":
            out.update(_option_settings(config_dir, group, entry))
    out.update(flat({k: v for k, v in content.items() if k not in _OVERLAY_KEYS}))
    return out


def expected(overrides: list[str], config_dir: Path = CONFIG_DIR) -> dict:
    """The settings (by dotted path) a list of overrides composes to, read from the config files as plain YAML.

    Only for records written before records kept their call (`legacy`): group
    files under their group, the primary config's own settings, then the
    `_global_` overlays in its defaults list's order, the overrides last;
    an overlay's `override /group: option` entries choose groups unless the
    overrides name them. That is all these configs use (a test holds it
    against Hydra's composition of every experiment's cells).
    """
    config_dir = str(config_dir)
    _, defaults, primary = _tree(config_dir)
    named, settings_named = _named(overrides, config_dir)
    settings_named = {k: v for k, v in settings_named.items() if v != "~"}
    chosen = {**defaults, **named}
    for group, option in list(chosen.items()):
        if option is not None and _is_global(config_dir, group, option):
            for g, v in _overlay(_option(config_dir, group, option))[0].items():
                if g not in named:
                    chosen[g] = v
    out = {}
    for group in defaults:  # the primary's defaults list order; its own settings (`_self_`) sit after `data`
        option = chosen[group]
        if option is not None and not _is_global(config_dir, group, option):
            out.update({f"{group}.{k}": v for k, v in _option_settings(config_dir, group, option).items()})
        if group == "data":
            out.update(primary)
    for group in defaults:
        option = chosen[group]
        if option is not None and _is_global(config_dir, group, option):
            out.update(_option_settings(config_dir, group, option))
    out.update(settings_named)
    return out


def unflat(settings: dict) -> dict:
    """{dotted path: leaf} back into a nested dict: `expected`'s settings as a config (`records.cell_id` takes it)."""
    out: dict = {}
    for key, value in settings.items():
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def legacy_agrees(config: dict, want: dict, free: tuple[str, ...] = ()) -> bool:
    """Whether a legacy record's config has every setting both it and `want` (from `expected`) name, at its value."""
    have = flat(config)
    skip = {*RUNTIME, *free}
    return all(have[k] == v for k, v in want.items() if k in have and k not in skip and k.partition(".")[0] not in skip)


def settings_agree(call: dict, config: dict) -> bool:
    """Whether a record's resolved config has every setting of `call` at its value (groups aside)."""
    have = flat(config)
    return all(have[key] == value for key, value in call.items() if key in have and value != "~")
