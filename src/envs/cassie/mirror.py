"""Left–right mirror maps for Cassie: observations, actions and the full MuJoCo state.

The mirror is the reflection across the world x–z plane (y → −y). Under it a position keeps x and z and
negates y; an angular quantity (rotation axis, angular velocity) is an axial vector and maps as
(x, y, z) → (−x, y, −z), so a quaternion (w, x, y, z) → (w, −x, y, −z). Both legs' joint axes are parallel
in the model, so swapping the legs maps a pitch-axis joint's angle to the same angle on the other leg and a
roll- or yaw-axis joint's angle (hip roll, hip yaw) to its negative.

Maps are signed permutations written as index lists (the users' convention, docs/envs/cassie.md): entry i of the mirrored vector
is ``x[abs(index[i])]``, negated when ``index[i]`` is negative; ``-0.1`` stands for "−x[0]".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import mujoco
import numpy as np

from hydrarl.envs.cassie.model import SIDES

# Swap legs, negate hip roll and hip yaw: (left, right) x (roll, yaw, pitch, knee, foot).
ACTION_MIRROR = [-5, -6, 7, 8, 9, -0.1, -1, 2, 3, 4]
NEGATED_HINGES = ("hip-roll", "hip-yaw")  # roll/yaw-axis hinges; every other hinge turns about the pitch axis


def _entry(index: int, negate: bool) -> int | float:
    return -(index or 0.1) if negate else index


def signed_permutation(entries: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """An index list in the users' convention -> (indices (n,) int, signs (n,) ±1.0)."""
    values = np.asarray(entries, dtype=float)
    return np.abs(values).astype(int), np.where(values < 0, -1.0, 1.0)


def apply(x: np.ndarray, permutation: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """``x`` (..., n) mirrored by a ``signed_permutation``; batches along the leading axes."""
    index, sign = permutation
    x = np.asarray(x)
    return (x[..., index] * sign).astype(x.dtype)


def _legs(start: int, per_leg: int, negated: Sequence[int]) -> list[float]:
    """Swap two legs of ``per_leg`` entries stored from ``start`` (left then right), negating the
    within-leg positions ``negated``."""
    return [
        _entry(start + (1 - leg) * per_leg + k, k in negated)
        for leg in range(2)
        for k in range(per_leg)
    ]


def observation_mirror(blocks: Mapping[str, slice]) -> list[float]:
    """The observation mirror as an index list, from the observation's named blocks (see ``env.py``):
    legs swapped with roll/yaw negated, quaternion (w, −x, y, −z), linear velocity y negated, angular velocity
    x and z negated, clock shifted by half a period ([sin, cos] → [−sin, −cos]), height and speed unchanged."""
    negated = {"height": (), "quat": (1, 3), "lin_vel": (1,), "ang_vel": (0, 2), "clock": (0, 1), "speed": ()}
    entries: list[float] = []
    for name, block in blocks.items():
        start, size = block.start, block.stop - block.start
        if name in negated:
            entries += [_entry(start + k, k in negated[name]) for k in range(size)]
        elif name in ("motor_pos", "motor_vel"):
            entries += _legs(start, size // 2, negated=(0, 1))
        elif name in ("passive_pos", "passive_vel"):
            entries += _legs(start, size // 2, negated=())
        else:
            raise ValueError(f"no mirror rule for the observation block {name!r}")
    return entries


class StateMirror:
    """The full-state mirror ``(qpos, qvel) -> (qpos, qvel)`` of a Cassie model, as two signed permutations.

    - free joint: position (x, −y, z), quaternion (w, −x, y, −z); linear velocity (world) (x, −y, z), angular
      velocity (pelvis frame) (−x, y, −z);
    - each ``left-*`` joint swaps with its ``right-*`` twin; hip roll and hip yaw negated, other hinges kept;
    - the achilles-rod ball joints: quaternion (w, −x, −y, z), angular velocity (−x, −y, z). The two rods'
      reference frames are reflections of each other in their own local z (the model's ``xyaxes`` differ in
      the sign of their third components), so the rotation's axis maps as (x, y, z) → (−x, −y, z) in the
      rod's frame, not as the world's (−x, y, −z).
    """

    def __init__(self, model: mujoco.MjModel):
        qpos_entries: list[float] = list(range(model.nq))
        qvel_entries: list[float] = list(range(model.nv))
        for joint in range(model.njnt):
            name, kind = model.joint(joint).name, model.jnt_type[joint]
            qadr, vadr = int(model.jnt_qposadr[joint]), int(model.jnt_dofadr[joint])
            if kind == mujoco.mjtJoint.mjJNT_FREE:
                qpos_entries[qadr:qadr + 7] = [_entry(qadr + k, k in (1, 4, 6)) for k in range(7)]
                qvel_entries[vadr:vadr + 6] = [_entry(vadr + k, k in (1, 3, 5)) for k in range(6)]
                continue
            side, _, rest = name.partition("-")
            if side not in SIDES:
                raise ValueError(f"joint {name!r} is neither left- nor right-: cannot mirror it")
            twin = model.joint(f"{SIDES[1 - SIDES.index(side)]}-{rest}").id
            tq, tv = int(model.jnt_qposadr[twin]), int(model.jnt_dofadr[twin])
            if kind == mujoco.mjtJoint.mjJNT_BALL:
                qpos_entries[qadr:qadr + 4] = [_entry(tq + k, k in (1, 2)) for k in range(4)]
                qvel_entries[vadr:vadr + 3] = [_entry(tv + k, k in (0, 1)) for k in range(3)]
            else:
                qpos_entries[qadr] = _entry(tq, rest in NEGATED_HINGES)
                qvel_entries[vadr] = _entry(tv, rest in NEGATED_HINGES)
        self._qpos, self._qvel = signed_permutation(qpos_entries), signed_permutation(qvel_entries)

    def __call__(self, qpos: np.ndarray, qvel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mirrored copies of ``qpos`` (nq,) and ``qvel`` (nv,)."""
        return apply(qpos, self._qpos), apply(qvel, self._qvel)
