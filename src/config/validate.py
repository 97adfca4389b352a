"""The checks of a composed config's values: a UserError naming the key and what is allowed."""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hydra._internal.utils import _locate
from omegaconf import DictConfig, OmegaConf

from hydrarl.errors import UserError, missing_module_name
from hydrarl.values import is_integer, is_number

DEVICES = ("auto", "cpu", "cuda")
VEC_ENVS = ("dummy", "subproc")
RENDER_MODES = ("none", "record")
WRAPPER_ONLY = ("train", "eval")


def check_wrapper_target(entry, index: int) -> None:
    """``env.wrappers.<index>._target_`` names something that can be imported (a wrapper class or a function
    that wraps an env): a UserError naming the entry and the import's cause otherwise. A target whose own
    module imports an optional module that is missing is left to the env's build, which names the extra."""
    target = entry.get("_target_") if OmegaConf.is_dict(entry) or isinstance(entry, dict) else None
    if not isinstance(target, str) or not target.strip():
        raise UserError(f"env.wrappers.{index} must be a {{_target_: <module>.<Wrapper>, ...}} entry, "
                        f"e.g. {{_target_: gymnasium.wrappers.ClipAction}}; it is {entry!r}.")
    try:
        _locate(target)  # Hydra's own lookup of a _target_ (hydra.utils.get_object, which also logs the failure)
    except Exception as exc:  # noqa: BLE001  (an ImportError, or whatever the module raises on import)
        missing = missing_module_name(exc)
        if missing is not None and not (target == missing or target.startswith(missing + ".")):
            return  # the target's module exists but needs an optional module: the env's build names the extra
        cause = exc.__cause__ or exc
        raise UserError(f"env.wrappers.{index}._target_={target} cannot be found ({str(cause).strip().splitlines()[0]}): "
                        "a wrapper as <module>.<Wrapper>, e.g. gymnasium.wrappers.ClipAction.") from None


def wrapper_only(entry, index: int) -> str | None:
    """``only`` of the wrapper entry ``env.wrappers.<index>``: ``train``, ``eval`` or None (both kinds of
    env copy); a UserError naming the key and the allowed values otherwise."""
    only = entry.get("only") if OmegaConf.is_dict(entry) or isinstance(entry, dict) else None
    if only is not None and only not in WRAPPER_ONLY:
        raise UserError(f"env.wrappers.{index}.only={only!r} is not allowed: one of {', '.join(WRAPPER_ONLY)} "
                        "(train: training env copies only; eval: evaluation copies only), or leave it out for both.")
    return only


# Keys that moved: the old key -> the one to use now.
RENAMED_KEYS = {"trainer.seed": "seed"}


def renamed_key_message(key: str, value) -> str:
    """The UserError text for an override of a key that moved (``RENAMED_KEYS``)."""
    new = RENAMED_KEYS[key.lstrip("+~")]
    return f"{key.lstrip('+~')} is no longer a config key: use {new}={value}."


def _int(value, key: str, minimum: int) -> None:
    if not is_integer(value) or value < minimum:
        raise UserError(f"{key}={value!r} is not allowed: it must be an integer >= {minimum}.")


@dataclass(frozen=True)
class Allowed:
    """What an algorithm constructor argument may be: a number (an integer with ``integer``; none without
    ``number``) within ``low``..``high`` (an end in ``open_ends`` excluded: "low", "high"), or one of ``also``,
    or what ``other`` accepts (e.g. a schedule); ``other_text`` says what that is."""

    low: float | None = None
    high: float | None = None
    integer: bool = False
    open_ends: tuple[str, ...] = ()
    also: tuple = ()
    other: Callable[[Any], bool] | None = field(default=None, compare=False)
    other_text: str = ""
    number: bool = True

    def allows(self, value: Any) -> bool:
        if any(value == a and type(value) is type(a) for a in self.also):
            return True
        if self.other is not None and self.other(value):
            return True
        if not self.number or not is_number(value) or (self.integer and not isinstance(value, numbers.Integral)):
            return False
        above = self.low is None or (value > self.low if "low" in self.open_ends else value >= self.low)
        below = self.high is None or (value < self.high if "high" in self.open_ends else value <= self.high)
        return above and below

    def __str__(self) -> str:
        if not self.number:
            return self.other_text
        kind = "an integer" if self.integer else "a number"
        if self.low is not None and self.high is not None:
            left, right = "(" if "low" in self.open_ends else "[", ")" if "high" in self.open_ends else "]"
            text = f"{kind} in {left}{self.low:g}, {self.high:g}{right}"
        elif self.low is not None:
            text = f"{kind} {'>' if 'low' in self.open_ends else '>='} {self.low:g}"
        else:
            text = kind
        extras = [*(repr(a) if isinstance(a, str) else str(a).lower() if a is None else str(a) for a in self.also), *([self.other_text] if self.other_text else [])]
        return text + "".join(f", or {e}" for e in extras)


def _schedule(value: Any) -> bool:
    """A config node that Hydra instantiates (``{_target_: ...}``): a schedule, checked by SB3 itself."""
    return OmegaConf.is_dict(value) and "_target_" in value


def _train_freq(value: Any) -> bool:
    """``[n, step|episode]``: train every n steps or n episodes."""
    return (OmegaConf.is_list(value) and len(value) == 2 and isinstance(value[0], numbers.Integral)
            and not isinstance(value[0], bool) and value[0] >= 1 and value[1] in ("step", "episode"))


def _auto_ent_coef(value: Any) -> bool:
    """``auto`` or ``auto_<initial value>``: the entropy coefficient learned (SAC, TQC, CrossQ)."""
    if not isinstance(value, str) or not value.startswith("auto"):
        return False
    rest = value.removeprefix("auto")
    if not rest:
        return True
    try:
        return rest.startswith("_") and float(rest[1:]) > 0
    except ValueError:
        return False


def _bool(value: Any) -> bool:
    return isinstance(value, bool)


POSITIVE = Allowed(0, open_ends=("low",))
UNIT = Allowed(0, 1)
COUNT = Allowed(1, integer=True)

# The constructor arguments of the algorithms in conf/algorithm/ (SB3, sb3-contrib, hydrarl's own) that take a
# number or a flag, and what each may be; checked in whichever algorithm config has the key.
ALGORITHM_VALUES: dict[str, Allowed] = {
    "learning_rate": Allowed(0, open_ends=("low",), other=_schedule, other_text="a schedule {_target_: ...}"),
    "batch_size": COUNT,
    "buffer_size": COUNT,
    "n_steps": COUNT,
    "n_epochs": COUNT,
    "learning_starts": Allowed(0, integer=True),
    "gamma": UNIT,
    "tau": Allowed(0, 1, open_ends=("low",)),
    "gae_lambda": UNIT,
    "train_freq": Allowed(1, integer=True, other=_train_freq, other_text="[n, step] or [n, episode]"),
    "gradient_steps": Allowed(1, integer=True, also=(-1,)),
    "target_update_interval": COUNT,
    "exploration_fraction": UNIT,
    "exploration_initial_eps": UNIT,
    "exploration_final_eps": UNIT,
    "ent_coef": Allowed(0, other=_auto_ent_coef, other_text="'auto' or 'auto_<initial value>' (SAC, TQC, CrossQ)"),
    "vf_coef": Allowed(0),
    "max_grad_norm": POSITIVE,
    "clip_range": Allowed(0, open_ends=("low",), other=_schedule, other_text="a schedule {_target_: ...}"),
    "clip_range_vf": Allowed(0, open_ends=("low",), also=(None,), other=_schedule, other_text="a schedule {_target_: ...}"),
    "target_kl": Allowed(0, open_ends=("low",), also=(None,)),
    "policy_delay": COUNT,
    "target_policy_noise": Allowed(0),
    "target_noise_clip": Allowed(0),
    "top_quantiles_to_drop_per_net": Allowed(0, integer=True),
    "n_delta": COUNT,
    "segment_len": Allowed(1, integer=True, also=(None,)),
    "td_steps": COUNT,
    "n_top": Allowed(1, integer=True, also=(None,)),
    "delta_std": POSITIVE,
    "cg_max_steps": COUNT,
    "cg_damping": POSITIVE,
    "n_critic_updates": COUNT,
    "sde_sample_freq": Allowed(-1, integer=True),
    "stats_window_size": COUNT,
    "alpha": Allowed(0),
    "beta0": UNIT,
    "priority_eps": POSITIVE,
    "n_sampled_goal": Allowed(0, integer=True),
    "subgoal_test_perc": UNIT,
    "action_noise_std": Allowed(0),
    **{key: Allowed(other=_bool, other_text="true or false", number=False) for key in
       ("use_sde", "normalize_advantage", "optimize_memory_usage", "zero_policy", "use_sde_at_warmup",
        "use_action_replay", "ep_early_done_on_succ")},
}


def check_algorithm(algorithm: DictConfig) -> None:
    """Each constructor argument of ``ALGORITHM_VALUES`` the algorithm config has, against what it may be:
    a UserError naming the key, the value and what is allowed (before anything is built or recorded)."""
    for key, allowed in ALGORITHM_VALUES.items():
        if key in algorithm and not allowed.allows(algorithm[key]):
            value = algorithm[key]
            shown = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
            raise UserError(f"algorithm.{key}={shown!r} is not allowed: {allowed}.")


# Where the metrics a run logs come from: eval/ (the Trainer's evaluation), train/ and rollout/ (SB3), time/ (the Trainer).
METRIC_SOURCES = ("eval", "train", "rollout", "time")
# What the Trainer's evaluation logs every epoch (hydrarl.training.evaluation.summarize): these five always,
# eval/success_rate where the env reports info["is_success"].
EVAL_METRICS = ("eval/mean_reward", "eval/std_reward", "eval/min_reward", "eval/max_reward", "eval/mean_ep_length",
                "eval/success_rate")


def env_eval_metrics(env: DictConfig) -> tuple[str, ...] | None:
    """The ``eval/`` names a run on this env can log: :data:`EVAL_METRICS` and the env's own per-episode
    numbers (``info["episode_metrics"]``) that its config lists as ``episode_metrics: [name, ...]``. None
    (not known before the first evaluation) for an env registered by a module of its own (``id:
    <module>:<Env>``) whose config lists none: such an env may report numbers of its own."""
    own = env.get("episode_metrics")
    if own is None and ":" in str(env.get("id", "")):
        return None
    return (*EVAL_METRICS, *(f"eval/{name}" for name in (own or ())))


def is_metric_name(name: Any) -> bool:
    """Whether ``name`` has the form of a metric a run logs: ``<source>/<name>`` with a source of ``METRIC_SOURCES``."""
    source, _, metric = name.partition("/") if isinstance(name, str) else ("", "", "")
    return source in METRIC_SOURCES and bool(metric)


def check_metrics(cfg: DictConfig) -> None:
    """``trainer.metric`` and ``trainer.early_stop.metric`` name metrics a run can log: an ``eval/`` name the
    evaluation logs (:func:`env_eval_metrics`), or a ``train/``, ``rollout/`` or ``time/`` name. Whether the
    env reports success (``eval/success_rate``), and SB3's names, are known only once the run trains: the
    Trainer checks the names again against its first epoch's metrics."""
    t = cfg.trainer
    known = env_eval_metrics(cfg.env)
    for key in ("metric", "early_stop.metric"):
        name = OmegaConf.select(t, key)
        if key != "metric" and name == t.metric:
            continue
        if name is None:
            continue
        eval_names = ", ".join(known or EVAL_METRICS)
        if not is_metric_name(name) or (name.startswith("eval/") and known is not None and name not in known):
            raise UserError(f"trainer.{key}={name!r} is not allowed: a metric the run logs: {eval_names} "
                            f"(eval/success_rate where the env reports success), train/<SB3 loss>, rollout/<SB3 stat>, "
                            f"time/<timing>, or null for the default.")
        if name.startswith("eval/") and t.n_test_rollouts == 0:
            raise UserError(f"trainer.{key}={name} is never logged with trainer.n_test_rollouts=0 (no evaluation): "
                            "evaluate at least one episode per epoch, or name a train/ or time/ metric.")


def validate(cfg: DictConfig) -> None:
    """Check the values a composed config carries; raise UserError naming the key and what is allowed."""
    t = cfg.trainer
    _int(t.n_epochs, "trainer.n_epochs", 1)
    cap = t.get("epoch_cap")
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, numbers.Integral) or cap < 1):
        raise UserError(f"trainer.epoch_cap={cap!r} is not allowed: an integer >= 1, or null for no cap.")
    _int(t.eval_after_n_steps, "trainer.eval_after_n_steps", 1)
    _int(t.n_test_rollouts, "trainer.n_test_rollouts", 0)
    _int(t.checkpoint_every, "trainer.checkpoint_every", 0)
    _int(t.torch_threads, "trainer.torch_threads", 1)
    _int(t.early_stop.last_n, "trainer.early_stop.last_n", 1)
    threshold = t.early_stop.threshold
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, numbers.Real)):
        raise UserError(f"trainer.early_stop.threshold={threshold!r} is not allowed: a number, or null for no early stop.")
    if "seed" in t:  # +trainer.seed=...: the seed has one key, the top-level one
        raise UserError(renamed_key_message("trainer.seed", t.seed))
    if cfg.get("seed") is not None:
        _int(cfg.seed, "seed", 0)
    device = str(t.device)
    if device.split(":")[0] not in DEVICES or (":" in device and not (device.startswith("cuda:") and device[5:].isdigit())):
        raise UserError(f"trainer.device={device!r} is not allowed: one of auto, cpu, cuda, cuda:<index>.")
    _int(cfg.env.n_envs, "env.n_envs", 1)
    if cfg.env.vec_env not in VEC_ENVS:
        raise UserError(f"env.vec_env={cfg.env.vec_env!r} is not allowed: one of {', '.join(VEC_ENVS)}.")
    if cfg.env.max_episode_steps is not None:
        _int(cfg.env.max_episode_steps, "env.max_episode_steps", 1)
    if not OmegaConf.is_list(cfg.env.wrappers):
        raise UserError("env.wrappers must be a list of {_target_: ...} entries.")
    for index, entry in enumerate(cfg.env.wrappers):
        check_wrapper_target(entry, index)
        wrapper_only(entry, index)
    if cfg.get("render", "none") not in RENDER_MODES:
        raise UserError(f"render={cfg.render!r} is not allowed: one of {', '.join(RENDER_MODES)} "
                        "(record: MP4s of evaluation episodes every trainer.video.every epochs).")
    _int(t.video.every, "trainer.video.every", 1)
    _int(t.video.episodes, "trainer.video.episodes", 1)
    check_metrics(cfg)
    check_algorithm(cfg.algorithm)
