"""Gait statistics and symmetry indices (src/envs/cassie/gait_stats.py) on scripted foot traces, and as the real
Cassie env reports them in ``episode_metrics`` (so evaluation logs them as ``eval/*``)."""

from __future__ import annotations

import numpy as np
import pytest

from hydrarl.envs.cassie.gait_stats import CONTACT_N, GaitStats, symmetry_index

DT = 0.025  # s, Cassie's 40 Hz


def walk(stats: GaitStats, cycles: int, swinging: tuple[int, ...] = (0, 1), peaks: tuple[float, float] = (0.08, 0.08),
         stride: float = 0.3) -> None:
    """Alternating steps, left first: a foot in ``swinging`` lifts for 16 steps (rising to its peak) while the other
    stands, then lands ``stride`` m ahead of the other (one step on both feet); the other foot stays down."""
    x = np.zeros(2)
    for _ in range(cycles):
        for foot in (0, 1):
            if foot not in swinging:
                continue
            for k in range(16):
                force, height = np.array([300.0, 300.0]), np.zeros(2)
                force[foot], height[foot] = 0.0, peaks[foot] * np.sin(np.pi * (k + 0.5) / 16)
                stats.update(force, height, x.copy())
            x[foot] = x[1 - foot] + stride
            stats.update(np.array([300.0, 300.0]), np.zeros(2), x.copy())


def test_the_symmetry_index():
    assert symmetry_index(1.0, 1.0) == 0.0 and symmetry_index(0.0, 0.0) == 0.0
    assert symmetry_index(0.05, 0.0) == 200.0
    assert symmetry_index(2.0, 1.0) == pytest.approx(100 * 1 / 1.5)


def test_a_symmetric_walk_has_indices_near_zero():
    stats = GaitStats(DT)
    walk(stats, cycles=5)
    m = stats.metrics()
    assert m["steps_left"] == m["steps_right"] == 5
    assert m["swing_height_left"] == pytest.approx(m["swing_height_right"]) == pytest.approx(0.08, abs=0.001)
    assert m["step_length_left"] == m["step_length_right"] == pytest.approx(0.3)
    assert m["stance_time_left"] == m["stance_time_right"] == 18 * DT  # the other's swing and both landings
    assert m["symmetry_swing_height"] == m["symmetry_step_length"] == m["symmetry_stance_time"] == 0.0


def test_a_dragging_foot_and_a_lower_step_show_in_the_indices():
    drag = GaitStats(DT)
    walk(drag, cycles=5, swinging=(1,))  # the left foot never lifts
    m = drag.metrics()
    assert (m["steps_left"], m["swing_height_left"], m["step_length_left"]) == (0.0, 0.0, 0.0)
    assert m["steps_right"] == 5 and m["symmetry_swing_height"] == 200.0 and m["symmetry_step_length"] == 200.0
    assert m["stance_time_left"] == 5 * 17 * DT and m["stance_time_right"] == 1 * DT  # the whole episode; landings
    low = GaitStats(DT)
    walk(low, cycles=5, peaks=(0.04, 0.08))  # the left foot steps half as high
    assert low.metrics()["symmetry_swing_height"] == pytest.approx(100 * 0.04 / 0.06, rel=0.02)


def test_a_light_touch_is_not_a_stance():
    stats = GaitStats(DT)
    for force in (300.0, CONTACT_N / 2, 300.0):  # lift-off, a touch below the threshold, touchdown
        stats.update(np.array([force, 300.0]), np.array([0.01, 0.0]), np.zeros(2))
    assert stats.metrics()["steps_left"] == 1 and stats.swings[0] == [0.01]


def test_the_cassie_env_reports_the_gait_in_its_episode_metrics(menagerie):
    from hydrarl.envs.cassie.env import CassieEnv

    env = CassieEnv()
    env.reset(seed=0)
    for _ in range(40):  # 1 s of the zero action: standing on both feet
        info = env.step(np.zeros(10))[4]
    metrics = info["episode_metrics"]
    assert {f"symmetry_{k}" for k in ("swing_height", "stance_time", "step_length")} <= set(metrics)
    assert metrics["steps_left"] == metrics["steps_right"] == 0 and metrics["stance_time_left"] == pytest.approx(1.0)
    env.reset(seed=0)
    assert env.step(np.zeros(10))[4]["episode_metrics"]["stance_time_left"] == pytest.approx(DT)  # reset clears it
