"""The checks of a composed config's values: a UserError naming the key and what is allowed."""

from __future__ import annotations

import numbers

from omegaconf import DictConfig, OmegaConf

from hydrarl.errors import UserError

DEVICES = ("auto", "cpu", "cuda")
VEC_ENVS = ("dummy", "subproc")
RENDER_MODES = ("none", "record")
WRAPPER_ONLY = ("train", "eval")


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
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise UserError(f"{key}={value!r} is not allowed: it must be an integer >= {minimum}.")


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
    if device.split(":")[0] not in DEVICES or (":" in device and not device.startswith("cuda:")):
        raise UserError(f"trainer.device={device!r} is not allowed: one of auto, cpu, cuda, cuda:<index>.")
    _int(cfg.env.n_envs, "env.n_envs", 1)
    if cfg.env.vec_env not in VEC_ENVS:
        raise UserError(f"env.vec_env={cfg.env.vec_env!r} is not allowed: one of {', '.join(VEC_ENVS)}.")
    if cfg.env.max_episode_steps is not None:
        _int(cfg.env.max_episode_steps, "env.max_episode_steps", 1)
    if not OmegaConf.is_list(cfg.env.wrappers):
        raise UserError("env.wrappers must be a list of {_target_: ...} entries.")
    for index, entry in enumerate(cfg.env.wrappers):
        wrapper_only(entry, index)
    if cfg.get("render", "none") not in RENDER_MODES:
        raise UserError(f"render={cfg.render!r} is not allowed: one of {', '.join(RENDER_MODES)} "
                        "(record: MP4s of evaluation episodes every trainer.video.every epochs).")
    _int(t.video.every, "trainer.video.every", 1)
    _int(t.video.episodes, "trainer.video.episodes", 1)
