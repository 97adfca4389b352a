"""Composing ``conf/main.yaml``: the one way every entry point, the regression matrix and the tests
build a run's config, with the command-line checks that turn Hydra's errors into UserErrors.

``compose(overrides)`` gives the config ``experiment/train.py`` would run (HydraConfig set, the
``hydra`` node dropped), its group choices checked against the files in ``conf/`` and its values
validated. ``check_command_line`` does the same for a whole command line, sweeps included.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, open_dict

from hydrarl.config import resolvers  # noqa: F401  (registers the resolvers conf/ uses)
from hydrarl.config.overrides import override_key
from hydrarl.config.validate import RENAMED_KEYS, renamed_key_message, validate
from hydrarl.errors import UserError
from hydrarl.paths import CONF_DIR

GROUPS = ("env", "algorithm", "trainer", "logger", "search", "experiment")


def available(group: str, root: Path | None = None) -> list[str]:
    """The options of a config group, from the files in ``conf/<group>/`` (or ``root``; ``Env/algo`` for nested ones).
    Files and folders whose name starts with ``_`` (shared defaults such as ``conf/search/_defaults.yaml``) are no options."""
    root = root or CONF_DIR / group
    paths = (p.relative_to(root) for p in root.rglob("*.yaml"))
    return sorted(str(p.with_suffix("")) for p in paths if not any(part.startswith("_") for part in p.parts))


def _hydra_compose(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = hydra_compose("main", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)  # ${hydra:...} interpolations resolve as in a run
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def _hydra_group_options(group: str) -> list[str] | None:
    """The options of one of Hydra's own groups (``hydra/launcher``: Hydra's and its plugins'); None for a name that
    is not one of them (composing then says what is wrong)."""
    from hydra.core.global_hydra import GlobalHydra

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        if group.removeprefix("hydra/") not in loader.list_groups("hydra"):
            return None
        return loader.get_group_options(group)


def check_group(key: str, values: list[str], options: list[str] | None = None) -> None:
    """A UserError naming the options when a group override (``env=...``) names a file ``conf/`` lacks, or, given
    ``options``, a value not among them."""
    group = key.lstrip("+~").split("@")[0]
    if options is None:
        if group not in GROUPS:
            return
        options = available(group)
    for value in values:
        if value not in options:
            raise UserError(f"{group}={value} is unknown. Available {group} options: {', '.join(options)}.")


def _unknown_key_message(key: str, base: DictConfig) -> str:
    """Name the deepest existing node of a dotted key and the keys it has."""
    parts = key.lstrip("+~").split(".")
    node, known = base, []
    for part in parts:
        if not isinstance(node, DictConfig) or part not in node:
            break
        node, known = node[part], known + [part]
    where = ".".join(known) or "the top level"
    keys = ", ".join(str(k) for k in node.keys()) if isinstance(node, DictConfig) else ""
    if len(known) == len(parts) and isinstance(node, DictConfig):  # a {...} value with keys the node lacks
        return (f"{key}={{...}} may only set the keys {where} has ({keys}); add a new one with "
                f"'+{where}.<new key>=...', one override per key.")
    hint = f" Keys under {where}: {keys}." if keys else ""
    return f"unknown config key '{key}'.{hint} To add a new key, prefix it with '+' (e.g. +{key}=...)."


GRAMMAR_URL = "https://hydra.cc/docs/advanced/override_grammar/basic/"


def parse_overrides(overrides: list[str]) -> list:
    """Hydra's parse of the overrides; for text its grammar rejects, a one-line UserError naming the override
    and why (Hydra's own message less its "Error parsing override" and link lines)."""
    parser = OverridesParser.create()
    parsed = []
    for text in overrides:
        try:
            parsed.extend(parser.parse_overrides([text]))
        except HydraException as exc:
            why = [line.strip() for line in str(exc).splitlines()
                   if line.strip() and not line.startswith(("See https://", "Error parsing override"))]
            raise UserError(f"cannot parse the override '{text}': {'; '.join(why) or 'not in the override grammar'} "
                            f"(grammar: {GRAMMAR_URL}).") from exc
    return parsed


def compose(overrides: list[str], check: bool = True) -> DictConfig:
    """The config of ``experiment/train.py <overrides>`` (no sweeps). With ``check``, group choices,
    keys and values are checked: anything wrong is a UserError saying what is allowed."""
    if not check:
        return _hydra_compose(overrides)
    parsed = parse_overrides(overrides)
    for override in parsed:
        if override.get_key_element().lstrip("+~") in RENAMED_KEYS:
            raise UserError(renamed_key_message(override.get_key_element(), override.value()))
        if override.key_or_group in GROUPS and not override.is_delete():
            value = override.value()
            many = isinstance(value, list) and override.key_or_group == "logger"
            check_group(override.get_key_element(), [str(v) for v in value] if many else [str(value)])
        elif override.key_or_group.startswith("hydra/") and not override.is_delete():
            if (options := _hydra_group_options(override.key_or_group)) is not None:
                check_group(override.key_or_group, [str(override.value())], options)
    try:
        cfg = _hydra_compose(overrides)
    except HydraException as exc:
        text = str(exc)
        for o in overrides:
            key = o.split("=")[0]
            if not key.lstrip("+~").startswith("hydra.") and (f"'{key.lstrip('+~')}'" in text or f"'{key}'" in text):
                groups_only = [g for g in overrides if override_key(g) in GROUPS]
                raise UserError(_unknown_key_message(key, _hydra_compose(groups_only))) from exc
        # Hydra's own words: what failed, why (its cause: a hydra.* key it lacks, a value of the wrong type), then any hint
        what = [line.strip() for line in text.strip().splitlines() if line.strip()] or [repr(exc)]
        why = str(exc.__cause__).strip().splitlines()[0] if exc.__cause__ is not None and str(exc.__cause__).strip() else ""
        raise UserError(" ".join([what[0].rstrip(".") + (f": {why.rstrip('.')}." if why else "."), *what[1:]])) from exc
    try:
        validate(cfg)
    except UserError:
        raise
    except Exception as exc:  # an interpolation or type that cannot resolve
        raise UserError(f"the config does not resolve: {exc}") from exc
    return cfg


def check_flag_choice(flag: str, spec: str, group: str, choice: str) -> None:
    """A UserError starting with ``flag 'spec':`` and naming the options when ``group=choice`` names no config."""
    try:
        check_group(group, [choice])
    except UserError as exc:
        raise UserError(f"{flag} {spec!r}: {exc}") from exc


def compose_for(flag: str, spec: str, choices: dict[str, str], overrides: list[str]) -> DictConfig:
    """The config of ``group=choice`` for each of ``choices`` and ``overrides``, composed for a command-line option's
    value (``flag`` ``spec``, e.g. ``--env 'Cassie env.kwargs.speeds=[0.5]'``): a UserError starting with
    ``flag 'spec':`` for an unknown choice (naming the options) or for overrides that do not apply."""
    for group, choice in choices.items():
        check_flag_choice(flag, spec, group, choice)
    try:
        return compose([*(f"{group}={choice}" for group, choice in choices.items()), *overrides])
    except UserError as exc:
        why = f"the overrides {' '.join(overrides)} do not apply: {exc}" if overrides else str(exc)
        raise UserError(f"{flag} {spec!r}: {why}") from exc


BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
PARAMS_PREFIX = "hydra.sweeper.params."


def _sweep_values(override) -> list[str]:
    """The values of a sweep override as override text (choices and ranges list them; intervals cannot: [])."""
    try:
        return [str(v) for v in override.sweep_string_iterator()]
    except Exception:  # noqa: BLE001  (an interval: no finite list)
        return []


def check_command_line(overrides: list[str], multirun: bool) -> DictConfig:
    """Check a command line's overrides, sweeps included; return the config of its first job. Raises UserError.

    Each group value of a sweep is checked against ``conf/``. A grid (the basic sweeper: one job per
    combination of the sweeps' values) has every combination composed and validated, so a bad value of any
    job is refused before the first job runs; otherwise (a search) the first value of each sweep is composed.
    ``hydra.*`` overrides are composed too (a key Hydra lacks, a value of the wrong type: a UserError), but for the
    sweeper's settings (``hydra.sweeper.*``: checked against the sweeper by the command line's caller); Hydra takes no
    sweep values for them: a ``hydra.sweeper.params.<key>=<sweep>`` has ``<key>`` checked, then is refused with the
    way to search it."""
    parsed = parse_overrides(overrides)
    probe: list[str] = []
    sweeps: list[tuple[str, list[str]]] = []  # (key, values) of each listable sweep, in command-line order
    hydra_sweep = None
    for override in parsed:
        key = override.get_key_element()
        if override_key(override.input_line).startswith("hydra."):
            if override.is_sweep_override():
                hydra_sweep = hydra_sweep or override
                inner = override_key(override.input_line).removeprefix(PARAMS_PREFIX)
                values = _sweep_values(override)
                if inner != override_key(override.input_line) and values:
                    probe.append(f"{inner}={values[0]}")  # the searched key must exist
            elif not override_key(override.input_line).startswith("hydra.sweeper."):  # the sweeper checks its own
                probe.append(override.input_line)
            continue
        if not override.is_sweep_override():
            probe.append(override.input_line)
            continue
        if not multirun:
            raise UserError(f"'{override.input_line}' is a sweep; add --multirun to run one job per value.")
        values = _sweep_values(override)
        check_group(key, values)
        if values:
            sweeps.append((key, values))
            probe.append(f"{key}={values[0]}")
    cfg = compose(probe)
    if hydra_sweep is not None:
        line = hydra_sweep.input_line
        key, expression = override_key(line), line.split("=", 1)[1]
        inner = key.removeprefix(PARAMS_PREFIX)
        how = f"to search {inner}, give it on the command line: {inner}={expression}" if inner != key else "give it one value"
        raise UserError(f"'{line}' gives sweep values to a hydra.* key, which Hydra does not allow; {how}.")
    if multirun and sweeps and HydraConfig.get().sweeper.get("_target_") == BASIC_SWEEPER:
        first_job = HydraConfig.instance().cfg
        keys = {key for key, _ in sweeps}
        plain = [o for o in probe if o.split("=", 1)[0] not in keys]
        for combination in itertools.islice(itertools.product(*(values for _, values in sweeps)), 1, None):
            compose([*plain, *(f"{key}={value}" for (key, _), value in zip(sweeps, combination, strict=True))])
        HydraConfig.instance().cfg = first_job  # the first job's hydra node again (sweep dir, sweeper)
    return cfg
