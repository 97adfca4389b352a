"""Cassie rewards as pure functions of plain numbers and arrays, and their configuration.

``gait`` (default): a periodic clock reward. The phase φ ∈ [0, 1) runs once per gait period; the left foot is
in stance for φ ∈ [0, 0.5) and in swing for φ ∈ [0.5, 1), the right foot the other way round. Per foot, with
the smooth stance indicator s ∈ [0, 1] (:func:`stance_indicator`) and c = 2s − 1 (+1 stance, −1 swing):

    foot_force = c · (1 − exp(−F/σ_F))      stance rewards ground force F (N), swing penalises it
    foot_speed = −c · (1 − exp(−v/σ_v))     stance penalises foot speed v (m/s), swing rewards it

summed over both feet, a swing-height term (1 − s)·min(h, h_target)/h_target (the swing foot's lowest point h
above the floor, in m, paid up to ``foot_height_target``; off by default), plus forward-speed tracking exp(−(vx − v_cmd)²/σ_speed), forward progress
min(vx, v_cmd) (m/s: linear, so it pays for the first step away from standing still, where the tracking
term's slope is small for large commands and the users' vx² has none; off by default), an overspeed penalty
−max(0, vx − v_cmd) (m/s; with the weight of ``progress`` the two make a tent peaked at the command, so
running away faster than commanded costs as much as lagging; off by default), uprightness
exp(−k·(1 − ⟨q, [1, 0, 0, 0]⟩²)), an alive bonus of 1 per step, and the penalties −‖a‖² (the residual
action) and −‖τ/τ_max‖² (joint torques over their limits). Each term is multiplied by its weight; the step
reward is the sum. Standing still with both feet loaded scores ≈ 0 on the foot terms (the stance foot's gain
cancels the swing foot's loss); stepping in time with the clock scores up to 2·(w_force + w_speed).

``speed``: our users' speed reward, sign(vx)·vx² + 10·exp(−3·‖q − [1, 0, 0, 0]‖) (no weights).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

import numpy as np

from hydrarl.errors import UserError
from hydrarl.values import is_number

GAIT_WEIGHTS = {  # per-step weights of the gait reward's terms
    "foot_force": 0.5,
    "foot_speed": 0.5,
    "foot_height": 0.0,
    "speed": 1.0,
    "progress": 0.0,
    "overspeed": 0.0,
    "upright": 0.5,
    "alive": 0.2,
    "action": 0.01,
    "torque": 0.01,
}
REWARD_NAMES = ("gait", "speed")


@dataclass(frozen=True)
class RewardConfig:
    """The ``reward`` kwarg of the env. Weights and the shape parameters apply to ``gait`` only."""

    name: str = "gait"
    weights: dict[str, float] = field(default_factory=lambda: dict(GAIT_WEIGHTS))
    force_sigma: float = 100.0  # N: a stance foot carrying ~300 N (the robot's weight) scores 0.95
    foot_speed_sigma: float = 0.5  # m/s
    foot_height_target: float = 0.08  # m: the swing height paid in full by the foot_height term
    speed_sigma: float = 0.25  # (m/s)²: 0.5 m/s off the command scores exp(−1)
    upright_k: float = 10.0  # a 10° tilt scores 0.93, 30° 0.51
    stance_sharpness: float = 10.0  # κ of the stance indicator: 0.78 at 0.02 of a cycle past a switch, 0.99995 mid-phase

    @classmethod
    def from_kwargs(cls, value: Mapping | None) -> RewardConfig:
        """Validated config from the env's ``reward`` kwarg (a partial dict; missing keys keep defaults)."""
        if value is not None and not isinstance(value, Mapping):
            raise UserError(f"Cassie env: reward={value!r} is not allowed: a dict such as {{name: gait, weights: {{...}}}}.")
        value = dict(value or {})
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(value) - set(allowed))
        if unknown:
            raise UserError(f"Cassie env: unknown reward key(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}.")
        name = value.pop("name", "gait")
        if name not in REWARD_NAMES:
            raise UserError(f"Cassie env: reward.name={name!r} is not allowed: one of {', '.join(REWARD_NAMES)}.")
        weights = value.pop("weights", None) or {}
        if not isinstance(weights, Mapping):
            raise UserError(f"Cassie env: reward.weights={weights!r} is not allowed: a dict of term name -> weight.")
        bad = sorted(set(weights) - set(GAIT_WEIGHTS))
        if bad:
            raise UserError(f"Cassie env: unknown reward weight(s) {', '.join(bad)}; the gait terms are "
                            f"{', '.join(GAIT_WEIGHTS)}.")
        for key, number in weights.items():
            if not is_number(number, finite=True) or number < 0:
                raise UserError(f"Cassie env: reward.weights.{key}={number!r} is not allowed: a number >= 0.")
        for key, number in value.items():
            if not is_number(number, finite=True) or number <= 0:
                raise UserError(f"Cassie env: reward.{key}={number!r} is not allowed: a number > 0.")
        return cls(name=name, weights={**GAIT_WEIGHTS, **{k: float(v) for k, v in weights.items()}},
                   **{k: float(v) for k, v in value.items()})


def stance_indicator(phase: float, sharpness: float) -> float:
    """Smooth indicator in [0, 1] that the left foot is in stance: σ(κ·sin 2πφ), ≈1 for φ ∈ (0, 0.5), ≈0 for
    φ ∈ (0.5, 1), 0.5 at the switches. Periodic and smooth, so the reward has no jumps; the right foot's is
    ``stance_indicator(phase + 0.5)`` = 1 − the left one's."""
    return 1.0 / (1.0 + math.exp(-sharpness * math.sin(2.0 * math.pi * phase)))


def saturate(x: float, sigma: float) -> float:
    """1 − exp(−x/σ) ∈ [0, 1) for x ≥ 0: a normalised magnitude (σ in the units of x)."""
    return 1.0 - math.exp(-max(x, 0.0) / sigma)


def foot_terms(stance: float, force: float, speed: float, force_sigma: float, speed_sigma: float) -> tuple[float, float]:
    """(force term, speed term) of one foot, each in (−1, 1): ``stance`` ∈ [0, 1] the stance indicator,
    ``force`` the vertical ground force (N), ``speed`` the foot's speed (m/s)."""
    c = 2.0 * stance - 1.0
    return c * saturate(force, force_sigma), -c * saturate(speed, speed_sigma)


def swing_height(stance: float, height: float, target: float) -> float:
    """(1 − ``stance``)·min(``height``, ``target``)/``target`` ∈ [0, 1]: one foot's height above the floor (m), paid
    while it is in swing, up to ``target`` (m)."""
    return (1.0 - stance) * min(max(height, 0.0), target) / target


def speed_tracking(vx: float, command: float, sigma: float) -> float:
    """exp(−(vx − command)²/σ) ∈ (0, 1], 1 at the commanded speed (m/s; σ in (m/s)²)."""
    return math.exp(-((vx - command) ** 2) / sigma)


def progress(vx: float, command: float) -> float:
    """min(vx, command) in m/s: forward speed, paid in full up to the commanded speed and no further."""
    return min(vx, command)


def overspeed(vx: float, command: float) -> float:
    """−max(0, vx − command) ≤ 0 in m/s: the speed beyond the command, as a penalty."""
    return -max(vx - command, 0.0)


def upright(quat: np.ndarray, k: float) -> float:
    """exp(−k·(1 − w²)) ∈ (0, 1] for a unit quaternion (w, x, y, z): 1 at the identity (upright, facing +x);
    1 − w² = sin²(θ/2) for a rotation by θ, so tilting and turning away both cost."""
    return math.exp(-k * (1.0 - float(quat[0]) ** 2))


def squared_norm_penalty(x: np.ndarray, scale: np.ndarray | float = 1.0) -> float:
    """−‖x/scale‖² (≤ 0): the action penalty with ``scale`` 1, the torque penalty with ``scale`` = τ_max."""
    return -float(np.sum((np.asarray(x) / scale) ** 2))


def gait_reward(
    cfg: RewardConfig, phase: float, foot_force: np.ndarray, foot_speed: np.ndarray, foot_height: np.ndarray, vx: float,
    command: float, quat: np.ndarray, action: np.ndarray, torque: np.ndarray, torque_limit: np.ndarray,
) -> dict[str, float]:
    """The weighted gait terms: ``foot_force``, ``foot_speed``, ``foot_height`` (2,) left/right in N, m/s and m; ``vx`` forward
    speed and ``command`` (m/s); ``quat`` pelvis (w, x, y, z); ``action`` (10,) residual; ``torque`` and
    ``torque_limit`` (10,) Nm. Returns term name → weighted value; their sum is the step reward."""
    force_term = speed_term = height_term = 0.0
    for foot, shift in enumerate((0.0, 0.5)):
        stance = stance_indicator(phase + shift, cfg.stance_sharpness)
        f, s = foot_terms(stance, float(foot_force[foot]), float(foot_speed[foot]), cfg.force_sigma, cfg.foot_speed_sigma)
        force_term, speed_term = force_term + f, speed_term + s
        height_term += swing_height(stance, float(foot_height[foot]), cfg.foot_height_target)
    raw = {
        "foot_force": force_term,
        "foot_speed": speed_term,
        "foot_height": height_term,
        "speed": speed_tracking(vx, command, cfg.speed_sigma),
        "progress": progress(vx, command),
        "overspeed": overspeed(vx, command),
        "upright": upright(quat, cfg.upright_k),
        "alive": 1.0,
        "action": squared_norm_penalty(action),
        "torque": squared_norm_penalty(torque, torque_limit),
    }
    return {name: cfg.weights[name] * value for name, value in raw.items()}


def speed_reward(vx: float, quat: np.ndarray) -> dict[str, float]:
    """Our users' speed reward: ``speed`` = sign(vx)·vx², ``orientation`` = 10·exp(−3·‖q − [1, 0, 0, 0]‖)."""
    return {
        "speed": math.copysign(vx * vx, vx),
        "orientation": 10.0 * math.exp(-3.0 * float(np.linalg.norm(np.asarray(quat) - [1.0, 0.0, 0.0, 0.0]))),
    }
