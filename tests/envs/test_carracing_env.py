"""CarRacing wrappers (src/envs/carracing.py) and the factory's ``only: train|eval`` entries.

Termination rules, frame skip and clipping are pinned on a scripted env that plays a given reward
list and frames with or without road pixels; shapes, the action mapping, the config's train/eval
split and the road check are also checked on the real ``CarRacing-v3``.
"""

from __future__ import annotations

import itertools

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from hydrarl.config import validate
from hydrarl.envs.carracing import (
    ClipReward,
    DiscreteActions,
    FrameSkip,
    FrameStack,
    GrayScale,
    LenientTermination,
    road_visible,
)
from hydrarl.envs.factory import make_env, make_vec_env
from hydrarl.errors import UserError
from tests.helpers.compose import compose_cfg

GRASS, ROAD = (102, 204, 102), (102, 102, 102)
SCRIPTED_ID = "HydrarlScriptedCarRacing-v0"


class ScriptedEnv(gym.Env):
    """CarRacing's spaces; step i pays ``rewards[i]`` and shows a frame with road pixels if
    ``road[i]``; terminated after the last reward. Every frame has a road-grey pixel in the bottom
    15 % of the rows (where the dashboard is), which the road check must ignore."""

    metadata = {"render_modes": []}

    def __init__(self, rewards, road=None):
        self.rewards = [float(r) for r in rewards]
        self.road = [True] * len(self.rewards) if road is None else list(road)
        self.observation_space = spaces.Box(0, 255, (96, 96, 3), np.uint8)
        self.action_space = spaces.Box(np.array([-1, 0, 0], np.float32), np.array([1, 1, 1], np.float32))
        self.actions: list[np.ndarray] = []
        self.t = 0

    @staticmethod
    def frame(road: bool) -> np.ndarray:
        frame = np.empty((96, 96, 3), np.uint8)
        frame[:] = GRASS
        frame[90, 5] = (120, 120, 120)
        if road:
            frame[30:40, 40:56] = ROAD
        return frame

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.frame(True), {}

    def step(self, action):
        self.actions.append(np.array(action))
        reward, road = self.rewards[self.t], self.road[self.t]
        self.t += 1
        return self.frame(road), reward, self.t == len(self.rewards), False, {}


if SCRIPTED_ID not in gym.registry:
    gym.register(SCRIPTED_ID, entry_point=ScriptedEnv)


def play(env: gym.Env, actions=None, n: int = 10_000):
    """Reset, then step until the episode ends; returns (rewards, last terminated, last truncated, last info)."""
    env.reset(seed=0)
    rewards = []
    for i in range(n):
        action = env.action_space.sample() if actions is None else actions[i % len(actions)]
        _, reward, terminated, truncated, info = env.step(action)
        rewards.append(reward)
        if terminated or truncated:
            break
    return rewards, terminated, truncated, info


NOOP = [np.zeros(3, np.float32)]
OFF = {"max_penalty": None, "consecutive_negative": None, "road_check": False}


def chain(env) -> list[str]:
    names = []
    while env is not None:
        names.append(type(env).__name__)
        env = getattr(env, "env", None)
    return names


# -- road check ---------------------------------------------------------------------------------------

def test_road_visible_needs_a_grey_pixel_in_the_top_85_percent():
    frame = ScriptedEnv.frame(False)
    assert not road_visible(frame)             # grass only, and a grey pixel in the dashboard rows (row 90 of 96)
    frame[81, 0] = (100, 150, 100)             # the top 85 % are rows 0..80 (int(0.85 * 96) = 81 rows)
    assert not road_visible(frame)
    frame[80, 0] = (100, 150, 100)             # all channels within [100, 150], in row 80
    assert road_visible(frame)
    assert not road_visible(np.full((96, 96, 3), (151, 120, 120), np.uint8))
    assert not road_visible(np.full((96, 96, 3), (99, 120, 120), np.uint8))


# -- termination rules on scripted rewards ------------------------------------------------------------

def test_max_penalty_fires_when_the_sum_reaches_it():
    env = LenientTermination(ScriptedEnv([-10, -10, 5, -14, -1, -1, 0]), **{**OFF, "max_penalty": -30})
    rewards, terminated, truncated, info = play(env, NOOP)
    assert len(rewards) == 5 and sum(rewards) == -30       # -10 -10 +5 -14 = -29 continues; -30 ends
    assert truncated and not terminated and info["termination_rule"] == "max_penalty"


def test_consecutive_negatives_count_in_a_row():
    script = [-1, -1, 0.5, -1, -1, 0, -1, -1, -1, -1, 9]   # runs of 2 and 2 (0 is not negative), then 4
    env = LenientTermination(ScriptedEnv(script), **{**OFF, "consecutive_negative": 3})
    rewards, terminated, truncated, info = play(env, NOOP)
    assert len(rewards) == 9 and truncated and not terminated
    assert info["termination_rule"] == "consecutive_negative"


def test_road_check_ends_on_a_frame_without_road_after_the_grace_steps():
    road = [False, False, True, True, False, True]
    env = LenientTermination(ScriptedEnv([1] * 6, road), **{**OFF, "road_check": True}, grace_steps=2)
    rewards, terminated, truncated, info = play(env, NOOP)
    assert len(rewards) == 5 and truncated and info["termination_rule"] == "road_check"
    env = LenientTermination(ScriptedEnv([1] * 6, road), **{**OFF, "road_check": True}, grace_steps=0)
    assert len(play(env, NOOP)[0]) == 1


def test_first_rule_in_order_is_reported_and_counters_restart_on_reset():
    env = LenientTermination(ScriptedEnv([-5, -5, -5, 0], [True, True, False, True]), max_penalty=-15, consecutive_negative=3,
                             road_check=True)
    rewards, _, truncated, info = play(env, NOOP)                # all three rules hold at step 3
    assert len(rewards) == 3 and truncated and info["termination_rule"] == "max_penalty"
    env = LenientTermination(ScriptedEnv([-5, -5, 100, -5, -5, 1]), max_penalty=-15, consecutive_negative=None, road_check=False)
    assert len(play(env, NOOP)[0]) == 6                     # the sum never reaches -15
    env.reset()                                             # a second episode starts from 0 again
    assert len(play(env, NOOP)[0]) == 6


def test_rules_switched_off_and_env_termination_wins():
    env = LenientTermination(ScriptedEnv([-50] * 30, [False] * 30), **OFF)
    rewards, terminated, truncated, info = play(env, NOOP)
    assert len(rewards) == 30 and terminated and not truncated and "termination_rule" not in info
    env = LenientTermination(ScriptedEnv([-50]), max_penalty=-30)  # ends by the env at the step the rule would fire
    _, terminated, truncated, info = play(env, NOOP)
    assert terminated and not truncated and "termination_rule" not in info


def test_bad_rule_settings_are_user_errors():
    with pytest.raises(UserError, match="consecutive_negative"):
        LenientTermination(ScriptedEnv([0]), consecutive_negative=0)
    with pytest.raises(UserError, match="RGB"):
        LenientTermination(GrayScale(ScriptedEnv([0])))


# -- frame skip, clipping -----------------------------------------------------------------------------

def test_frame_skip_repeats_the_action_sums_rewards_and_stops_at_the_end():
    inner = ScriptedEnv([1, 2, 3, 4, 5, 6, 7])
    env = FrameSkip(inner, skip=3)
    actions = [np.array([a, 1, 0], np.float32) for a in (-1, 0, 1)]
    rewards, terminated, truncated, _ = play(env, actions)
    assert rewards == [6, 15, 7] and terminated              # the last step played 1 frame, not 3
    assert [a[0] for a in inner.actions] == [-1, -1, -1, 0, 0, 0, 1]
    env = FrameSkip(LenientTermination(ScriptedEnv([-1] * 10), **{**OFF, "consecutive_negative": 4}), skip=3)
    rewards, _, truncated, info = play(env, NOOP)
    assert rewards == [-3, -1] and truncated and info["termination_rule"] == "consecutive_negative"


def test_clip_reward():
    env = ClipReward(ScriptedEnv([-100, -0.1, 0.5, 3.3]), low=-10, high=1)
    assert play(env, NOOP)[0] == [-10, -0.1, 0.5, 1]
    with pytest.raises(UserError):
        ClipReward(ScriptedEnv([0]), low=1, high=-1)


# -- observations -------------------------------------------------------------------------------------

def test_gray_scale_is_channel_first_uint8_or_scaled_float():
    env = GrayScale(ScriptedEnv([0, 0]))
    obs, _ = env.reset()
    assert env.observation_space == spaces.Box(0, 255, (1, 96, 96), np.uint8)
    assert obs.shape == (1, 96, 96) and obs.dtype == np.uint8 and env.observation_space.contains(obs)
    assert obs[0, 0, 0] == 162 and obs[0, 35, 45] == 102       # grass 0.299*102 + 0.587*204 + 0.114*102 = 161.9
    env = GrayScale(ScriptedEnv([0, 0]), scale=True)
    obs, _ = env.reset()
    assert obs.dtype == np.float32 and env.observation_space.contains(obs)
    assert obs[0, 0, 0] == pytest.approx(162 / 255) and 0 <= obs.min() <= obs.max() <= 1


def test_gray_scale_crop():
    env = GrayScale(ScriptedEnv([0]), crop={"rows": [0, 84]})
    assert env.reset()[0].shape == (1, 84, 96) == env.observation_space.shape
    env = GrayScale(ScriptedEnv([0]), crop={"rows": [30, 40], "cols": [40, None]})
    obs, _ = env.reset()
    assert obs.shape == (1, 10, 56) and obs[0, 0, 0] == 102    # the road patch starts at the crop's corner
    for bad in ({"rows": [50, 10]}, {"rows": [0]}, {"top": [0, 10]}):
        with pytest.raises(UserError, match="crop"):
            GrayScale(ScriptedEnv([0]), crop=bad)


def test_frame_stack_on_the_channel_axis():
    inner = GrayScale(ScriptedEnv([0, 0, 0], road=[False, False, False]))
    env = FrameStack(inner, n=4)
    obs, _ = env.reset()
    assert env.observation_space.shape == obs.shape == (4, 96, 96) and obs.dtype == np.uint8
    assert all(np.array_equal(obs[i], obs[0]) for i in range(4))   # the reset frame fills every slot
    obs, *_ = env.step(NOOP[0])
    assert obs[3, 35, 45] == 162 and obs[2, 35, 45] == 102         # newest last: no road now, road before
    assert env.observation_space.contains(obs)
    assert FrameStack(GrayScale(ScriptedEnv([0])), n=1).reset()[0].shape == (1, 96, 96)
    with pytest.raises(UserError):
        FrameStack(ScriptedEnv([0]), n=2)                          # channel-last RGB: put it after GrayScale


# -- actions ------------------------------------------------------------------------------------------

def test_all_twelve_discrete_actions():
    inner = ScriptedEnv([0] * 12)
    env = DiscreteActions(inner)
    assert env.action_space == spaces.Discrete(12)
    env.reset()
    for a in range(12):
        env.step(a)
    expected = list(itertools.product((-1, 0, 1), (1, 0), (0.2, 0)))
    assert [tuple(float(x) for x in act) for act in inner.actions] == [pytest.approx(e) for e in expected]
    assert all(inner.action_space.contains(act) for act in inner.actions)
    assert [tuple(act) for act in inner.actions][5] == (0, 1, 0)    # straight, gas, no brake


def test_continuous_option_keeps_the_box_actions():
    inner = ScriptedEnv([0])
    env = DiscreteActions(inner, continuous=True)
    assert env.action_space == inner.action_space
    env.reset()
    env.step(np.array([0.3, 0.5, 0.0], np.float32))
    assert np.allclose(inner.actions[0], [0.3, 0.5, 0.0])


# -- the configs and only: train|eval -----------------------------------------------------------------

def scripted(env_cfg, rewards, road=None):
    """An env node (a composed CarRacing config) with the scripted env in place of CarRacing-v3."""
    env_cfg.id = SCRIPTED_ID
    env_cfg.kwargs = {"rewards": rewards, "road": road}
    return env_cfg


def scripted_cfg(rewards, road=None, overrides=()):
    return scripted(compose_cfg(["env=CarRacing", *overrides]).env, rewards, road)


def test_training_copy_has_skip_and_clip_and_the_monitor_sees_true_returns():
    script = [5, 5, 5, -0.1, -0.1, -0.1, -20, 0, 0, 7]
    env = make_env(scripted_cfg(script), training=True)
    assert chain(env)[:6] == ["DiscreteActions", "FrameStack", "GrayScale", "ClipReward", "FrameSkip", "Monitor"]
    assert env.observation_space == spaces.Box(0, 255, (1, 96, 96), np.uint8) and env.action_space == spaces.Discrete(12)
    rewards, terminated, _, info = play(env, [7])
    assert rewards == pytest.approx([1, -0.3, -10, 1]) and terminated       # skip 3, clipped to [-10, 1]
    assert info["episode"]["r"] == pytest.approx(sum(script)) and info["episode"]["l"] == len(script)


def test_evaluation_copy_acts_every_frame_with_true_rewards():
    script = [5, 5, 5, -0.1, -0.1, -0.1, -20, 0, 0, 7]
    env = make_env(scripted_cfg(script), training=False)
    names = chain(env)
    assert "FrameSkip" not in names and "ClipReward" not in names
    assert env.observation_space == spaces.Box(0, 255, (1, 96, 96), np.uint8) and env.action_space == spaces.Discrete(12)
    rewards, terminated, _, info = play(env, [7])
    assert rewards == pytest.approx(script) and terminated
    assert info["episode"]["r"] == pytest.approx(sum(script))


def test_train_and_eval_termination_rules_differ():
    road = [True] * 3 + [False] * 40
    env = make_env(scripted_cfg([-0.1] * 43, road), training=True)
    assert play(env, [7])[3]["termination_rule"] == "road_check"        # frame 4, inside agent step 2
    env = make_env(scripted_cfg([-0.1] * 43, road), training=False)      # road check off, 300 negatives
    rewards, terminated, truncated, info = play(env, [7])
    assert len(rewards) == 43 and terminated and "termination_rule" not in info
    env = make_env(scripted_cfg([-0.05] * 400), training=False)
    rewards, _, truncated, info = play(env, [7])
    assert len(rewards) == 300 and truncated and info["termination_rule"] == "consecutive_negative"
    env = make_env(scripted_cfg([-0.05] * 400), training=True)            # 25 frames: the 9th agent step
    rewards, _, truncated, info = play(env, [7])
    assert len(rewards) == 9 and info["termination_rule"] == "consecutive_negative"


@pytest.mark.parametrize("value", ["always", "training", True])
def test_bad_only_value_is_a_user_error(value):
    cfg = compose_cfg(["env=CarRacing"])
    cfg.env.wrappers[3].only = value
    with pytest.raises(UserError, match=r"env\.wrappers\.3\.only=.*one of train, eval"):
        validate(cfg)
    with pytest.raises(UserError, match=r"env\.wrappers\.3\.only"):
        make_env(cfg.env)


def test_only_override_from_the_command_line_composes():
    cfg = compose_cfg(["env=CarRacing", "env.wrappers.0.max_penalty=-5", "env.wrappers.3.only=null", "env.wrappers.3.skip=4"])
    validate(cfg)
    assert cfg.env.wrappers[0].max_penalty == -5 and cfg.env.wrappers[3].skip == 4
    assert "FrameSkip" in chain(make_env(scripted(cfg.env, [0]), training=False))


def test_unknown_wrapper_key_is_a_user_error():
    with pytest.raises(UserError, match=r"env\.wrappers\.3 .*FrameSkip"):
        make_env(scripted_cfg([0], overrides=["+env.wrappers.3.skips=4"]))


# -- the real CarRacing-v3 ----------------------------------------------------------------------------

def test_real_env_through_both_configs():
    cfg = compose_cfg(["env=CarRacing", "env.max_episode_steps=9"]).env
    train, evaluation = make_vec_env(cfg, 0), make_vec_env(cfg, 0, training=False)
    for venv in (train, evaluation):
        assert venv.observation_space == spaces.Box(0, 255, (1, 96, 96), np.uint8)
        assert venv.action_space == spaces.Discrete(12)
        assert venv.observation_space.contains(venv.reset()[0])
    lengths = []
    for venv in (train, evaluation):                  # 9 frames: 3 agent steps of 3 frames, or 9 steps
        venv.reset()
        for step in range(1, 20):
            _, _, done, info = venv.step(np.array([5]))
            if done[0]:
                lengths.append((step, info[0]["episode"]["l"]))
                break
        venv.close()
    assert lengths == [(3, 9), (9, 9)]
    raw = make_env(compose_cfg(["env=CarRacingContinuous"]).env)
    assert raw.observation_space == spaces.Box(0, 255, (96, 96, 3), np.uint8) and raw.action_space.shape == (3,)
    assert [type(w).__name__ for w in (raw, raw.env)] == ["Monitor", "LenientTermination"]


def test_real_episode_start_shows_road_from_the_first_frame():
    """The zoom-in of the first second (50 frames) shows the whole track, road included: the road
    check needs no grace at episode start (grace_steps: 0 in the configs)."""
    env = gym.make("CarRacing-v3", continuous=True)
    for seed in (0, 7, 31):                     # 31: the fewest road pixels at a start frame of 40 seeds
        obs, _ = env.reset(seed=seed)
        env.action_space.seed(seed)
        visible = [road_visible(obs)]
        for _ in range(55):
            obs, *_ = env.step(env.action_space.sample())
            visible.append(road_visible(obs))
        assert all(visible), f"seed {seed}: no road at frames {[i for i, v in enumerate(visible) if not v]}"
    env.close()


def test_real_env_rules_fire():
    env = LenientTermination(gym.make("CarRacing-v3", continuous=True), **{**OFF, "road_check": True})
    rewards, _, truncated, info = play(env, [np.array([1.0, 1.0, 0.0], np.float32)])   # full right, full gas: off the road
    assert truncated and info["termination_rule"] == "road_check" and 50 < len(rewards) < 200
    env = LenientTermination(gym.make("CarRacing-v3", continuous=True), **{**OFF, "consecutive_negative": 25})
    rewards, _, truncated, info = play(env, NOOP)                                       # standing still: -0.1 per frame
    assert truncated and info["termination_rule"] == "consecutive_negative"
    assert all(r < 0 for r in rewards[-25:]) and len(rewards) <= 26
    env.close()


def test_a_replay_buffer_larger_than_memory_is_a_user_error():
    """sac's default 1e6-row buffer of RGB frames (25.7 GiB) is refused with the key to change."""
    from hydrarl.agents.factory import build_agent
    from hydrarl.envs.factory import make_vec_env
    from hydrarl.errors import UserError
    from tests.helpers.compose import compose_cfg

    cfg = compose_cfg(["env=CarRacingContinuous", "algorithm=sac", "algorithm.buffer_size=100000000"])
    env = make_vec_env(cfg.env, 0)
    try:
        with pytest.raises(UserError, match="set a smaller algorithm.buffer_size"):
            build_agent(cfg.algorithm, env, 0, "cpu", name="sac", env_name="CarRacingContinuous")
    finally:
        env.close()
