"""Cassie env (src/envs/cassie) on the real Menagerie model and MuJoCo: loading and its errors, the PD servos,
standing, spaces, state estimation, mirroring, rewards, episode ends, determinism and config checks."""

from __future__ import annotations

import math

import mujoco
import numpy as np
import pytest

from hydrarl.config import validate
from hydrarl.envs.cassie import reward as R
from hydrarl.envs.cassie.env import OBS_BLOCKS, CassieEnv
from hydrarl.envs.cassie.model import load_model
from hydrarl.envs.factory import make_env
from hydrarl.errors import UserError
from tests.helpers.compose import compose_cfg

pytestmark = pytest.mark.usefixtures("menagerie")  # (tests/conftest.py) skip without the model, point at it
GEAR = np.array([25, 25, 16, 16, 50] * 2, float)  # the model facts of docs/envs/cassie.md, written out to check the code against
CTRL_MAX = np.array([4.5, 4.5, 12.2, 12.2, 0.9] * 2)
P = np.array([100, 100, 88, 96, 50] * 2, float)
D = np.array([10, 10, 8, 9.6, 5] * 2)
WEIGHT = 326.8  # N, the robot's mass (33.3 kg) times g


@pytest.fixture
def env():
    env = CassieEnv()
    yield env
    env.close()


# ------------------------------------------------------------------ model
def test_model_loads_offline_with_the_spec_facts(env):
    model = load_model()
    assert (model.opt.timestep, model.nq, model.nv, model.nu, model.nkey) == (0.0005, 35, 32, 10, 1)
    np.testing.assert_array_equal(model.actuator_gear[:, 0], GEAR)
    np.testing.assert_array_equal(model.actuator_ctrlrange[:, 1], CTRL_MAX)
    layout = env.layout
    np.testing.assert_allclose(layout.neutral[:5], [0.0045, 0, 0.4973, -1.1997, -1.5968], atol=1e-4)
    np.testing.assert_array_equal(layout.neutral[5:], layout.neutral[:5] * [-1, 1, 1, 1, 1])
    assert env.substeps == 50 and env.dt == pytest.approx(0.025)


def test_empty_menagerie_root_is_a_user_error_without_network(monkeypatch, tmp_path):
    import mujoco_menagerie._cache as cache

    def no_network(*args, **kwargs):
        raise AssertionError("tried the network")

    monkeypatch.setattr(cache.urllib.request, "urlopen", no_network)
    monkeypatch.setenv("MENAGERIE_ROOT", str(tmp_path))
    with pytest.raises(UserError) as err:
        CassieEnv()
    text = str(err.value)
    assert str(tmp_path) in text and "internet" in text and "export MENAGERIE_ROOT=" in text


def test_failed_download_is_a_user_error(monkeypatch, tmp_path):
    monkeypatch.delenv("MENAGERIE_ROOT")
    monkeypatch.setenv("MENAGERIE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MENAGERIE_BASE_URL", (tmp_path / "nowhere").as_uri())  # a file: URL, never the network
    with pytest.raises(UserError, match=r"(?s)not found.*internet.*MENAGERIE_ROOT"):
        load_model()


# ------------------------------------------------------------------ PD servo
def _servo_torque_after(env: CassieEnv, target: np.ndarray) -> np.ndarray:
    env.data.ctrl[:] = target * GEAR
    mujoco.mj_forward(env.model, env.data)
    return env.data.actuator_force * GEAR


def test_servo_is_the_pd_formula(env):
    env.reset(seed=0)
    for action in np.random.default_rng(0).uniform(-0.5, 0.5, (5, 10)):
        env.step(action)
    q, qd = env.data.qpos[env.layout.motor_qpos].copy(), env.data.qvel[env.layout.motor_dof].copy()
    assert np.abs(qd).min() > 1e-3 and np.abs(q - env.neutral).max() > 0.05  # a non-trivial state
    wanted = np.linspace(-0.5, 0.5, 10) * CTRL_MAX  # motor torques inside the limits
    target = q + (wanted + D * qd) / P
    motor = P * (target - q) - D * qd
    assert np.all(np.abs(motor) < CTRL_MAX) and np.abs(target - q).max() > 1e-3  # this case does not clip
    expected = GEAR * motor  # the gains act on motor torque; the joint gets gear times it
    np.testing.assert_allclose(_servo_torque_after(env, target), expected, rtol=1e-9, atol=1e-9)


def test_servo_torque_is_clipped_at_the_motor_limit(env):
    env.reset(seed=0)
    q, qd = env.data.qpos[env.layout.motor_qpos].copy(), env.data.qvel[env.layout.motor_dof].copy()
    target = q + np.array([0.1, -0.1, 0.01, -0.2, 0.001] * 2)
    raw = P * (target - q) - D * qd
    clipped = np.clip(raw, -CTRL_MAX, CTRL_MAX)
    assert np.sum(raw != clipped) == 6  # roll, yaw, knee of both legs clip; pitch and foot do not
    np.testing.assert_allclose(_servo_torque_after(env, target), GEAR * clipped, rtol=1e-9, atol=1e-9)


# ------------------------------------------------------------------ standing
def test_the_pd_loop_holding_the_standing_pose_stands_for_2_s(env):
    env.reset(seed=0)
    infos = []
    for _ in range(80):  # 2 s at 40 Hz, zero residual action: the PD servos hold the neutral pose
        _, _, terminated, _, info = env.step(np.zeros(10))
        assert not terminated
        infos.append(info)
    assert min(i["pelvis_height"] for i in infos) > 0.8
    assert np.mean([i["foot_force"].sum() for i in infos[40:]]) == pytest.approx(WEIGHT, rel=0.1)
    assert max(np.abs(i["foot_height"]).max() for i in infos) < 0.005  # feet stay on the floor


def test_the_home_pose_alone_tips_over(env):
    """Why the neutral pose has an offset: the home keyframe's pose, held by PD, falls within 2 s."""
    home = CassieEnv(neutral_offset=[0, 0, 0, 0, 0])
    home.reset(seed=0)
    heights = [home.step(np.zeros(10))[4]["pelvis_height"] for _ in range(80)]
    home.close()
    assert min(heights[:20]) > 0.8 and min(heights) < 0.8


# ------------------------------------------------------------------ spaces and observations
@pytest.mark.parametrize("mode", ["residual", "absolute"])
def test_spaces(mode):
    env = CassieEnv(action_mode=mode, speeds=[0.2, 0.7])
    space = env.action_space
    assert space.shape == (10,) and space.dtype == np.float32
    if mode == "residual":
        assert np.all(space.low == -1) and np.all(space.high == 1)
    else:
        np.testing.assert_allclose(space.low, env.layout.joint_range[:, 0], rtol=1e-6)
        np.testing.assert_allclose(space.high, env.layout.joint_range[:, 1], rtol=1e-6)
    obs_space = env.observation_space
    assert obs_space.shape == (42,) and obs_space.dtype == np.float32
    # the command is unbounded, so one model runs with any speeds list (trained on some, evaluated on others)
    assert obs_space == CassieEnv(speeds=[0.0, 1.5]).observation_space and obs_space.high[41] == np.inf
    assert np.all(obs_space.high[1:5] == 1) and np.all(obs_space.low[39:41] == -1)
    obs, _ = env.reset(seed=3)
    space.seed(3)
    for _ in range(15):
        assert obs.dtype == np.float32 and obs in obs_space
        obs, *_ = env.step(space.sample())


def test_observation_layout(env):
    obs, _ = env.reset(seed=0, options={"phase": 0.25, "speed": 0.6})
    d, layout = env.data, env.layout
    assert obs[0] == pytest.approx(1.0059, abs=1e-4)
    np.testing.assert_allclose(obs[1:5], [1, 0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(obs[5:15], layout.neutral, atol=1e-6)  # reset: the home keyframe
    np.testing.assert_allclose(obs[39:42], [1, 0, 0.6], atol=1e-6)
    d.qvel[:3] = [0.0, 1.0, 0.0]  # world +y while facing +y: forward in the heading frame
    yaw = np.array([math.cos(math.pi / 4), 0, 0, math.sin(math.pi / 4)])
    obs = env.set_state(np.concatenate([d.qpos[:3], yaw, d.qpos[7:]]), d.qvel)
    np.testing.assert_allclose(obs[19:22], [1, 0, 0], atol=1e-6)


def _rollout(env: CassieEnv, seed: int, steps: int) -> np.ndarray:
    obs = [env.reset(seed=seed)[0]]
    obs += [env.step(np.zeros(10))[0] for _ in range(steps)]
    return np.array(obs, dtype=float)


def test_state_est_adds_noise_of_the_configured_size():
    truth = _rollout(CassieEnv(), seed=5, steps=30)
    noisy = _rollout(CassieEnv(state_est=True), seed=5, steps=30) - truth
    blocks = OBS_BLOCKS
    for name, std in [("height", 0.01), ("lin_vel", 0.05), ("motor_vel", 0.05), ("passive_vel", 0.05),
                      ("passive_pos", 2e-4), ("ang_vel", 5e-4)]:
        assert 0.7 < np.std(noisy[:, blocks[name]]) / std < 1.3, name
    assert np.abs(noisy[:, blocks["motor_pos"]]).max() < 1e-5  # the encoders have no noise in the model
    assert np.abs(noisy[:, 39:]).max() == 0  # clock and speed are exact
    quiet = CassieEnv(state_est=True, state_est_noise={"height": 0, "linear_velocity": 0, "joint_velocity": 0,
                                                       "sensor_scale": 0})
    np.testing.assert_allclose(_rollout(quiet, seed=5, steps=30), truth, atol=1e-5)  # sensors read the truth


# ------------------------------------------------------------------ mirroring
def test_mirroring_twice_is_the_identity(env):
    rng = np.random.default_rng(0)
    obs, action = rng.normal(size=(4, 42)).astype(np.float32), rng.normal(size=10)
    np.testing.assert_array_equal(env.mirror_obs(env.mirror_obs(obs)), obs)
    np.testing.assert_array_equal(env.mirror_action(env.mirror_action(action)), action)
    qpos, qvel = rng.normal(size=35), rng.normal(size=32)
    np.testing.assert_array_equal(env.mirror_state(*env.mirror_state(qpos, qvel))[0], qpos)
    np.testing.assert_array_equal(env.mirror_state(*env.mirror_state(qpos, qvel))[1], qvel)
    assert not np.allclose(env.mirror_obs(obs), obs) and env.action_mirror_indices == [-5, -6, 7, 8, 9, -0.1, -1, 2, 3, 4]


def test_neutral_pose_is_its_own_mirror_image(env):
    np.testing.assert_array_equal(env.mirror_action(env.layout.neutral), env.layout.neutral)
    np.testing.assert_array_equal(env.mirror_action(env.neutral), env.neutral)
    tilted = CassieEnv(neutral_offset=[0.05, -0.03, 0.2, 0.1, -0.1])
    np.testing.assert_allclose(tilted.mirror_action(tilted.neutral), tilted.neutral, atol=1e-15)
    tilted.close()
    action = np.random.default_rng(1).uniform(-1, 1, 10)
    np.testing.assert_allclose(env.pd_target(env.mirror_action(action)), env.mirror_action(env.pd_target(action)))


def test_mirrored_state_is_the_mirror_image_of_the_robot(env):
    """Random joint angles: every body origin of the mirrored state is the reflection (y -> -y) of its twin's,
    and the achilles rods' frames are reflected too (checks the ball-joint quaternion rule)."""
    m, d = env.model, env.data
    env.reset(seed=0)
    rng = np.random.default_rng(2)
    qpos = d.qpos.copy()
    qpos[:3] += [0.1, 0.2, 0.0]
    for q in (qpos[3:7], *(qpos[m.joint(f"{s}-achilles-rod").qposadr[0]:][:4] for s in ("left", "right"))):
        q[:] = rng.normal(size=4) / 4 + [1, 0, 0, 0]
        q /= np.linalg.norm(q)
    hinges = [j for j in range(m.njnt) if m.jnt_type[j] == mujoco.mjtJoint.mjJNT_HINGE]
    qpos[m.jnt_qposadr[hinges]] += rng.uniform(-0.3, 0.3, len(hinges))
    env.set_state(qpos, d.qvel)
    xpos, xmat = d.xpos.copy(), d.xmat.copy().reshape(-1, 3, 3)
    env.set_state(*env.mirror_state(qpos, d.qvel))
    reflect = np.diag([1.0, -1.0, 1.0])
    for body in range(1, m.nbody):
        name = m.body(body).name
        twin = m.body(name.replace("left-", "right-") if "left-" in name else name.replace("right-", "left-")).id
        np.testing.assert_allclose(d.xpos[body], reflect @ xpos[twin], atol=1e-9, err_msg=name)
        if name.endswith("achilles-rod"):
            np.testing.assert_allclose(d.xmat[body].reshape(3, 3), reflect @ xmat[twin] @ np.diag([1, 1, -1]), atol=1e-9)


def test_mirrored_dynamics_stay_mirrored():
    """A state and its mirror image, stepped with an action sequence and its mirror image (clock half a period
    apart), give mirrored observations and equal rewards; the model's small left/right asymmetries (pelvis
    centre of mass 0.35 mm off the mid-plane, hip-roll centres of mass 0.1 mm) keep them apart by < 5e-3 for
    these 8 steps (0.2 s); a foot contact that begins a substep apart in the two worlds makes the next step's
    spring velocities differ by ~0.1 rad/s, so the comparison stops there."""
    env_a, env_b = CassieEnv(), CassieEnv()
    env_a.reset(seed=1, options={"phase": 0.1, "speed": 0.5})
    actions = np.random.default_rng(0).uniform(-0.3, 0.3, (12, 10))
    for action in actions[:3]:
        obs_a, *_ = env_a.step(action)
    obs_b = env_b.set_state(*env_a.mirror_state(env_a.data.qpos, env_a.data.qvel), phase=env_a.phase + 0.5,
                            speed=env_a.speed_command)
    np.testing.assert_allclose(obs_b, env_a.mirror_obs(obs_a), atol=1e-6)
    for action in actions[3:11]:
        obs_a, reward_a, *_ = env_a.step(action)
        obs_b, reward_b, *_ = env_b.step(env_a.mirror_action(action))
        np.testing.assert_allclose(obs_b, env_a.mirror_obs(obs_a), atol=0.01)
        assert reward_b == pytest.approx(reward_a, abs=0.01)
    assert np.abs(obs_a - env_a.mirror_obs(obs_a)).max() > 0.1  # the motion itself is not symmetric


# ------------------------------------------------------------------ rewards
def test_gait_reward_sums_the_weighted_terms(env):
    env.reset(seed=0)
    _, reward, _, _, info = env.step(np.full(10, 0.1))
    terms = info["reward_terms"]
    assert set(terms) == set(R.GAIT_WEIGHTS) and reward == pytest.approx(sum(terms.values()))
    assert terms["alive"] == 0.2 and terms["action"] == pytest.approx(-0.01 * 10 * 0.01)
    speed_env = CassieEnv(reward={"name": "speed"})
    speed_env.reset(seed=0)
    _, reward, _, _, info = speed_env.step(np.zeros(10))
    assert set(info["reward_terms"]) == {"speed", "orientation"} and reward == pytest.approx(sum(info["reward_terms"].values()))


# ------------------------------------------------------------------ episodes
def test_terminates_exactly_when_the_pelvis_leaves_the_height_range(env):
    env.reset(seed=0)
    for _ in range(60):
        _, _, terminated, truncated, info = env.step(np.ones(10))  # every target pushed up: the robot falls
        assert terminated == (info["pelvis_height"] < 0.4) and not truncated
        if terminated:
            break
    assert terminated
    qpos = env.data.qpos.copy()
    qpos[2] = 3.5  # dropped from above the range
    env.set_state(qpos, np.zeros(32))
    assert env.step(np.zeros(10))[2]
    qpos[2] = 2.9
    env.set_state(qpos, np.zeros(32))
    assert not env.step(np.zeros(10))[2]


def test_height_range_sets_where_a_fall_ends_the_episode():
    """The zero action sags for ~4.9 s before it falls: a raised lower bound ends the episode at the first step
    below it, long before the users' 0.4 m would."""
    strict = CassieEnv(height_range=[0.9, 3.0])
    strict.reset(seed=0)
    steps, terminated = 0, False
    while not terminated and steps < 400:
        _, _, terminated, _, info = strict.step(np.zeros(10))
        steps += 1
        assert terminated == (info["pelvis_height"] <= 0.9)
    assert terminated and steps < 190


def test_a_non_finite_action_ends_the_episode_without_a_nan(env):
    env.reset(seed=0)
    obs, reward, terminated, _, info = env.step(np.full(10, np.nan))
    assert terminated and reward == 0.0 and np.all(np.isfinite(obs)) and set(info["reward_terms"].values()) == {0.0}


def test_config_builds_the_env_and_truncates_at_max_episode_steps():
    cfg = compose_cfg(["env=Cassie", "algorithm=ppo"])
    validate(cfg)
    assert cfg.env.max_episode_steps == 400 and cfg.env.kwargs.policy_rate_hz == 40
    env = make_env(compose_cfg(["env=Cassie", "algorithm=ppo", "env.max_episode_steps=12"]).env)
    env.reset(seed=0)
    ends = [env.step(np.zeros(10))[2:4] for _ in range(12)]
    assert ends == [(False, False)] * 11 + [(False, True)]
    assert env.unwrapped.action_scale.tolist() == [0.4, 0.4, 0.5, 0.5, 0.5] * 2
    env.close()


def test_same_seed_same_episode():
    env_a, env_b = CassieEnv(state_est=True), CassieEnv(state_est=True)
    actions = np.random.default_rng(4).uniform(-0.5, 0.5, (10, 10))
    runs = []
    for env in (env_a, env_b, env_a):
        obs = [env.reset(seed=11)[0]] + [env.step(a)[0] for a in actions]
        runs.append(np.array(obs))
    np.testing.assert_array_equal(runs[0], runs[1])
    np.testing.assert_array_equal(runs[0], runs[2])
    assert not np.array_equal(env_a.reset(seed=12)[0], runs[0][0])


def test_info_keys_and_render():
    env = CassieEnv(render_mode="rgb_array")
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.zeros(10))
    assert {"pelvis_height", "pelvis_speed", "foot_height", "foot_force", "torque", "pd_target", "action", "phase",
            "speed_command", "reward_terms"} <= set(info)
    assert all(info[k].shape == (2,) for k in ("foot_height", "foot_force"))
    np.testing.assert_allclose(info["torque"], env.data.actuator_force * GEAR)
    np.testing.assert_allclose(info["pd_target"], env.neutral)
    frame = env.render()
    assert frame.shape == (320, 320, 3) and frame.dtype == np.uint8 and frame.std() > 10
    assert env.metadata["render_fps"] == 40
    env.close()


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"policy_rate_hz": 30}, "policy_rate_hz"),
        ({"action_mode": "torque"}, "action_mode"),
        ({"action_scale": [1, 2]}, "action_scale"),
        ({"state_est": "yes"}, "state_est"),
        ({"state_est_noise": {"height": -1}}, "state_est_noise.height"),
        ({"state_est_noise": {"pressure": 1}}, "pressure"),
        ({"speeds": []}, "speeds"),
        ({"gait_period": 0}, "gait_period"),
        ({"height_range": [1.0, 0.5]}, "height_range"),
        ({"height_range": 0.4}, "height_range"),
        ({"reward": {"name": "imitation"}}, "reward.name"),
        ({"reward": {"weights": {"bogus": 1}}}, "bogus"),
        ({"reward": {"force_sigma": -1}}, "reward.force_sigma"),
        ({"render_mode": "human"}, "render_mode"),
        ({"command_check": {"tolerance": 0}}, "command_check.tolerance"),
        ({"command_check": {"seconds": 5}}, "seconds"),
        ({"command_check": 5}, "command_check"),
    ],
)
def test_bad_kwargs_are_user_errors(kwargs, names):
    with pytest.raises(UserError, match=names.replace(".", r"\.")):
        CassieEnv(**kwargs)

