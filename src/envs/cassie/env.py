"""``CassieEnv``: the Agility Cassie biped (MuJoCo Menagerie) learning to walk at a commanded forward speed.

One env step = ``2000 / policy_rate_hz`` MuJoCo substeps of 0.5 ms (40 Hz: 50 substeps, 25 ms) with the
action's ten PD targets held; MuJoCo runs the PD law itself (``model.install_pd_servos``).

Actions (10,) in actuator order (left hip-roll, hip-yaw, hip-pitch, knee, foot, then right):
``residual`` (default) Box(−1, 1): target = neutral pose + action·``action_scale`` (rad); ``absolute``: target =
action (rad), the Box is the motor joints' ranges. Targets are not clipped to the joint ranges: a target beyond
a limit is how the policy asks for more torque there; the servos' torque limits bound it.

The neutral pose is the ``home`` keyframe's motor positions ([0.0045, 0, 0.4973, −1.1997, −1.5968] on the
left: the users' neutral-foot offset, docs/envs/cassie.md; hip roll negated on the right) plus ``neutral_offset`` (per leg: hip roll,
hip yaw, hip pitch, knee, foot; roll and yaw negated on the right, so the pose stays its own mirror image).
Held by the PD servos alone, ``home`` tips forward and the pelvis drops below 0.8 m within 2 s; the default
offset [0, 0, 0.1, 0, −0.05] rad (hip pitch back, toes down) brings the centre of mass over the feet, and zero
action then stands for ~4.9 s (found by a grid search over the pitch and foot offsets, inside a region of
offsets that all stand 4.5–5 s; after that, balance is the policy's job). ``action_scale`` [0.4, 0.4, 0.5, 0.5, 0.5] rad per unit action.

Observation (42,) float32; "pelvis frame" = the pelvis body's axes, "heading frame" = the world turned by the
pelvis' yaw (x forward, z up):

===========  ======  ============================================================================
indices      size    quantity
===========  ======  ============================================================================
0            1       pelvis height above the floor (m, the free joint's z)
1–4          4       pelvis orientation quaternion w, x, y, z (world)
5–14         10      motor joint positions (rad), actuator order
15–18        4       passive joint positions (rad): left shin, left tarsus, right shin, right tarsus
19–21        3       pelvis linear velocity (m/s), heading frame
22–24        3       pelvis angular velocity (rad/s), pelvis frame
25–34        10      motor joint velocities (rad/s)
35–38        4       passive joint velocities (rad/s)
39–40        2       clock sin(2π·phase), cos(2π·phase)
41           1       commanded forward speed (m/s; unbounded in the space, so that one model runs with any ``speeds``)
===========  ======  ============================================================================

``state_est=True`` observes the same quantities as a robot could: motor positions from the ``*-input``
encoders, shin/tarsus from the ``*-output`` encoders, orientation from ``pelvis-orientation``, angular
velocity from the gyro, each with Gaussian noise of the sensor's ``noise`` std (MuJoCo only stores it) times
``state_est_noise.sensor_scale``; height, linear velocity and joint velocities (no sensor) are the true values
plus Gaussian noise of std ``state_est_noise.height`` (m), ``linear_velocity`` (m/s), ``joint_velocity`` (rad/s).
Rewards and ``info`` always use the true state. All randomness comes from the env's seeded ``np_random``.

Left–right mirror maps for symmetric learning (``mirror.py``): ``mirror_obs``, ``mirror_action``, ``mirror_state`` and
the index lists ``obs_mirror_indices``, ``action_mirror_indices``; the mirrored clock is half a period on.

Episodes start at the ``home`` keyframe with a random clock phase in [0, 1) and a speed drawn from ``speeds``;
they end (``terminated``) when the pelvis height leaves ``height_range`` ((0.4, 3.0) m, the users' bounds) or MuJoCo
reports the simulation unstable (it then resets its state to ``qpos0``, so nothing non-finite reaches the agent;
that step's reward is 0).
Truncation is gymnasium's TimeLimit (``max_episode_steps``, 400 = 10 s at 40 Hz in the config).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

from hydrarl.envs.cassie import mirror
from hydrarl.envs.cassie.gait_stats import GaitStats
from hydrarl.envs.cassie.model import CassieLayout, instability_count, install_pd_servos, load_model
from hydrarl.envs.cassie.reward import RewardConfig, gait_reward, speed_reward
from hydrarl.envs.cassie.tracking import CommandCheck, SpeedTracking
from hydrarl.errors import UserError
from hydrarl.values import is_number

_BLOCK_SIZES = {"height": 1, "quat": 4, "motor_pos": 10, "passive_pos": 4, "lin_vel": 3, "ang_vel": 3, "motor_vel": 10,
                "passive_vel": 4, "clock": 2, "speed": 1}
_BLOCK_ENDS = list(itertools.accumulate(_BLOCK_SIZES.values()))
OBS_BLOCKS = {name: slice(end - size, end) for (name, size), end in zip(_BLOCK_SIZES.items(), _BLOCK_ENDS, strict=True)}
OBS_SIZE = _BLOCK_ENDS[-1]  # 42
HEIGHT_RANGE = (0.4, 3.0)  # m: the pelvis height outside it ends the episode (the users' bounds; the home pose is at ~1.0)
DEFAULT_SPEEDS = [round(0.1 * i, 1) for i in range(11)]  # m/s
DEFAULT_NOISE = {"height": 0.01, "linear_velocity": 0.05, "joint_velocity": 0.05, "sensor_scale": 1.0}
DEFAULT_ACTION_SCALE = [0.4, 0.4, 0.5, 0.5, 0.5]  # rad per unit residual action: hip roll, hip yaw, hip pitch, knee, foot
DEFAULT_NEUTRAL_OFFSET = [0.0, 0.0, 0.1, 0.0, -0.05]  # rad added to home per leg: hip roll, hip yaw, hip pitch, knee, foot
RIGHT_LEG_SIGN = np.array([-1.0, -1.0, 1.0, 1.0, 1.0])  # roll and yaw mirror onto the right leg
ACTION_MODES = ("residual", "absolute")
RENDER_SIZE = 320  # px, square frames from the model's pelvis-tracking camera `track`


def _check(ok: bool, key: str, value, allowed: str) -> None:
    if not ok:
        raise UserError(f"Cassie env: {key}={value!r} is not allowed: {allowed}.")


def _substeps(rate, timestep: float) -> int:
    """MuJoCo substeps per env step at ``rate`` Hz; a UserError unless the rate divides the simulation rate."""
    substeps = round(1.0 / (rate * timestep)) if is_number(rate, finite=True) and rate > 0 else 0
    if substeps < 1 or abs(substeps * rate * timestep - 1.0) > 1e-6:
        sim_hz = round(1.0 / timestep)
        examples = ", ".join(str(sim_hz // n) for n in range(1, sim_hz) if sim_hz % n == 0 and 10 <= sim_hz // n <= 200)
        _check(False, "policy_rate_hz", rate, f"a rate that divides the {sim_hz} Hz simulation into whole substeps, "
               f"{sim_hz}/n Hz: {examples}, or e.g. {sim_hz / 60:.6f} (60 substeps)")
    return substeps


def _noise_std(noise: Mapping[str, float], sensor_noise: np.ndarray) -> np.ndarray:
    """Per-entry std (42,) of the state_est observation noise: the configured std where there is no sensor, the
    sensors' own (``CassieLayout.sensor_noise``, times ``sensor_scale``) where there is one, 0 for clock and speed."""
    std = np.zeros(OBS_SIZE)
    std[OBS_BLOCKS["height"]] = noise["height"]
    std[OBS_BLOCKS["lin_vel"]] = noise["linear_velocity"]
    std[OBS_BLOCKS["motor_vel"]] = std[OBS_BLOCKS["passive_vel"]] = noise["joint_velocity"]
    for name, part in (("motor_pos", slice(0, 10)), ("passive_pos", slice(10, 14)), ("quat", slice(14, 18)),
                       ("ang_vel", slice(18, 21))):
        std[OBS_BLOCKS[name]] = sensor_noise[part] * noise["sensor_scale"]
    return std


class CassieEnv(gym.Env):
    """Cassie walking at a commanded speed; see the module doc for spaces, dynamics and episodes.

    Keyword arguments (all in ``conf/env/Cassie.yaml``): ``policy_rate_hz`` (Hz; must divide the 2 kHz
    simulation into whole substeps), ``action_mode`` (``residual`` | ``absolute``), ``action_scale`` (rad per
    unit residual action: one number, or five for hip roll, hip yaw, hip pitch, knee, foot of both legs),
    ``neutral_offset`` (rad, five values of the left leg added to the home pose; mirrored onto the right),
    ``state_est`` (bool), ``state_est_noise`` (dict, keys as ``DEFAULT_NOISE``), ``speeds`` (m/s, the commands
    drawn at reset), ``gait_period`` (s, one clock cycle = two steps), ``reward`` (``reward.RewardConfig``),
    ``height_range`` ([low, high] pelvis heights in m; outside them the episode ends), ``command_check`` (when an
    episode counts as walking on command: ``tracking.CommandCheck``), ``render_mode`` (None | ``rgb_array``).

    ``info`` at reset and every step: ``pelvis_height`` (m), ``pelvis_speed`` (world-x velocity, m/s),
    ``foot_height`` (2,) (m; the lowest point of each foot's collision capsule above the floor, 0 when touching),
    ``foot_force`` (2,) (N; vertical ground force summed over the foot's floor contacts), ``torque`` (10,) (Nm,
    joint side, the servo's output at the step's end state), ``pd_target`` (10,) (rad), ``action`` (10,) (the raw
    action; zeros at reset), ``phase``, ``speed_command``, ``reward_terms`` (term -> weighted value; empty at reset);
    after each step ``episode_metrics``: ``forward_speed``, ``forward_distance``, ``recent_speed`` and
    ``speed_error`` of ``tracking.SpeedTracking`` and the gait statistics and symmetry indices of
    ``gait_stats.GaitStats``, which evaluation logs as ``eval/<name>``; and ``is_success``: walking on command so far
    (``SpeedTracking.on_command``), which evaluation logs as ``eval/success_rate``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 40}

    def __init__(
        self,
        policy_rate_hz: float = 40,
        action_mode: str = "residual",
        action_scale: float | list[float] = DEFAULT_ACTION_SCALE,
        neutral_offset: list[float] | None = None,
        state_est: bool = False,
        state_est_noise: Mapping[str, float] | None = None,
        speeds: list[float] | None = None,
        gait_period: float = 0.8,
        reward: Mapping[str, Any] | None = None,
        height_range: tuple[float, float] | list[float] = HEIGHT_RANGE,
        command_check: Mapping[str, float] | None = None,
        render_mode: str | None = None,
    ):
        self.model = load_model()
        install_pd_servos(self.model)
        self.data = mujoco.MjData(self.model)
        self.layout = layout = CassieLayout.from_model(self.model)

        self.substeps = _substeps(policy_rate_hz, float(self.model.opt.timestep))
        self.dt = self.substeps * float(self.model.opt.timestep)  # s per env step
        _check(action_mode in ACTION_MODES, "action_mode", action_mode, " | ".join(ACTION_MODES))
        self.action_mode = action_mode
        scale = np.atleast_1d(np.asarray(action_scale, dtype=object))
        _check(scale.size in (1, 5) and all(is_number(s, finite=True) and s > 0 for s in scale), "action_scale", action_scale,
               "a number > 0 (rad per unit action) or a list of 5 (hip roll, hip yaw, hip pitch, knee, foot)")
        self.action_scale = np.resize(scale.astype(float), 10)
        offset = DEFAULT_NEUTRAL_OFFSET if neutral_offset is None else neutral_offset
        _check(isinstance(offset, list | tuple) and len(offset) == 5 and all(is_number(v, finite=True) for v in offset), "neutral_offset",
               neutral_offset, "a list of 5 numbers in rad (hip roll, hip yaw, hip pitch, knee, foot of the left leg)")
        self.neutral = layout.neutral + np.concatenate([offset, np.asarray(offset, dtype=float) * RIGHT_LEG_SIGN])
        _check(isinstance(state_est, bool), "state_est", state_est, "true | false")
        self.state_est = state_est
        _check(state_est_noise is None or isinstance(state_est_noise, Mapping), "state_est_noise", state_est_noise,
               f"a dict with keys {', '.join(DEFAULT_NOISE)}")
        noise = {**DEFAULT_NOISE, **(state_est_noise or {})}
        for key, value in noise.items():
            _check(key in DEFAULT_NOISE, "state_est_noise key", key, ", ".join(DEFAULT_NOISE))
            _check(is_number(value, finite=True) and value >= 0, f"state_est_noise.{key}", value, "a number >= 0")
        speeds = DEFAULT_SPEEDS if speeds is None else speeds
        _check(isinstance(speeds, list | tuple) and len(speeds) > 0 and all(is_number(s, finite=True) for s in speeds), "speeds", speeds,
               "a non-empty list of speeds in m/s")
        self.speeds = np.asarray(speeds, dtype=float)
        _check(is_number(gait_period, finite=True) and gait_period > 2 * self.dt, "gait_period", gait_period,
               f"a number of seconds > 2 env steps ({2 * self.dt:g} s)")
        self.phase_step = self.dt / gait_period  # clock phase advance per env step
        self.reward_cfg = RewardConfig.from_kwargs(reward)
        _check(isinstance(height_range, list | tuple) and len(height_range) == 2 and all(is_number(h, finite=True) for h in height_range)
               and 0 <= height_range[0] < height_range[1], "height_range", height_range,
               "[low, high] in m with 0 <= low < high (the home pose's pelvis is at ~1.0 m)")
        self.height_range = (float(height_range[0]), float(height_range[1]))
        _check(render_mode in (None, *self.metadata["render_modes"]), "render_mode", render_mode, "null | rgb_array")
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": 1.0 / self.dt}

        low, high = layout.joint_range[:, 0], layout.joint_range[:, 1]
        if action_mode == "residual":
            self.action_space = spaces.Box(-1.0, 1.0, (10,), np.float32)
        else:
            self.action_space = spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)
        obs_low, obs_high = np.full(OBS_SIZE, -np.inf, np.float32), np.full(OBS_SIZE, np.inf, np.float32)
        for block in (OBS_BLOCKS["quat"], OBS_BLOCKS["clock"]):
            obs_low[block], obs_high[block] = -1.0, 1.0
        self.observation_space = spaces.Box(obs_low, obs_high, dtype=np.float32)

        self._noise_std = _noise_std(noise, layout.sensor_noise)  # (42,) state_est only

        self.obs_mirror_indices = mirror.observation_mirror(OBS_BLOCKS)
        self.action_mirror_indices = list(mirror.ACTION_MIRROR)
        self._obs_mirror = mirror.signed_permutation(self.obs_mirror_indices)
        self._action_mirror = mirror.signed_permutation(self.action_mirror_indices)
        self._state_mirror = mirror.StateMirror(self.model)
        self._renderer: mujoco.Renderer | None = None
        self._scene_option: mujoco.MjvOption | None = None
        self.phase, self.speed_command = 0.0, 0.0
        self._tracking = SpeedTracking(self.dt, CommandCheck.from_kwargs(command_check))
        self._gait = GaitStats(self.dt)
        self._target = self.neutral.copy()
        self._velocity = np.zeros(6)  # scratch for mj_objectVelocity
        self._force = np.zeros(6)  # scratch for mj_contactForce
        self._foot_of_geom = {int(geom): foot for foot, geom in enumerate(layout.foot_geoms)}

    # ---------------------------------------------------------------- gymnasium API
    def reset(self, *, seed: int | None = None, options: Mapping[str, float] | None = None):
        """Home keyframe, random phase and speed; ``options`` may fix ``phase`` ([0, 1)) and ``speed`` (m/s)."""
        super().reset(seed=seed)
        options = dict(options or {})
        _check(set(options) <= {"phase", "speed"}, "reset options", options, "keys phase, speed")
        mujoco.mj_resetDataKeyframe(self.model, self.data, self.layout.home_key)
        self._target = self.neutral.copy()
        self.data.ctrl[self.layout.actuators] = self._target * self.layout.gear
        mujoco.mj_forward(self.model, self.data)
        self.phase = float(options.get("phase", self.np_random.random())) % 1.0
        self.speed_command = float(options.get("speed", self.np_random.choice(self.speeds)))
        self._tracking.reset(float(self.data.qpos[self.layout.free_qpos]))
        self._gait.reset()
        return self._observe(), self._info(np.zeros(10), {})

    def step(self, action):
        """Hold the action's PD targets for ``substeps`` MuJoCo steps: (observation (42,) float32, reward,
        terminated, truncated = False, info); ``info["phase"]`` is the clock phase the observation shows."""
        action = np.asarray(action, dtype=float)
        _check(action.shape == (10,), "action shape", action.shape, "(10,)")
        layout, data = self.layout, self.data
        self._target = self.pd_target(action)
        data.ctrl[layout.actuators] = self._target * layout.gear
        warnings_before = instability_count(data)
        mujoco.mj_step(self.model, data, nstep=self.substeps)
        mujoco.mj_forward(self.model, data)  # sensors, contacts and forces of the state the agent is shown
        self.phase = (self.phase + self.phase_step) % 1.0
        unstable = instability_count(data) != warnings_before
        height = float(data.qpos[layout.free_qpos + 2])
        terminated = unstable or not self.height_range[0] < height < self.height_range[1]
        feet = self._feet()
        terms = self._reward_terms(action, feet)
        if unstable:
            terms = dict.fromkeys(terms, 0.0)
        self._tracking.update(float(data.qvel[layout.free_dof]), float(data.qpos[layout.free_qpos]), self.speed_command)
        self._gait.update(feet["force"], feet["height"], feet["x"])
        info = self._info(action, terms, feet)
        info["episode_metrics"] = {**self._tracking.metrics(), **self._gait.metrics()}
        info["is_success"] = self._tracking.on_command()  # walked on command so far (tracking.py); at an episode's last step, its verdict
        return self._observe(), float(sum(terms.values())), terminated, False, info

    def render(self) -> np.ndarray | None:
        """An RGB frame (320, 320, 3) uint8 from the camera that follows the pelvis (the collision capsules
        when the model has no visual meshes); None unless ``render_mode="rgb_array"``."""
        if self.render_mode != "rgb_array":
            return None
        if self._renderer is None:
            self._renderer = mujoco.Renderer(self.model, RENDER_SIZE, RENDER_SIZE)
            self._scene_option = mujoco.MjvOption()
            if self.model.nmesh == 0:  # a copy without visual meshes (../shared/menagerie): draw the collision shapes
                self._scene_option.geomgroup[3] = 1
        self._renderer.update_scene(self.data, camera="track", scene_option=self._scene_option)
        return self._renderer.render()

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    # ---------------------------------------------------------------- mirroring and state access
    def mirror_obs(self, obs: np.ndarray) -> np.ndarray:
        """The left–right mirror image of observations (..., 42) (``obs_mirror_indices``)."""
        return mirror.apply(obs, self._obs_mirror)

    def mirror_action(self, action: np.ndarray) -> np.ndarray:
        """The mirror image of actions (..., 10) (``action_mirror_indices``); also maps PD targets, and the
        neutral pose onto itself, so residual and absolute actions mirror alike."""
        return mirror.apply(action, self._action_mirror)

    def mirror_state(self, qpos: np.ndarray, qvel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The mirror image of a MuJoCo state, qpos (35,) and qvel (32,) (``mirror.StateMirror``)."""
        return self._state_mirror(qpos, qvel)

    def set_state(self, qpos: np.ndarray, qvel: np.ndarray, phase: float | None = None, speed: float | None = None) -> np.ndarray:
        """Put the simulation in state (qpos, qvel), optionally set the clock phase and speed command, and return
        the observation of it."""
        self.data.qpos[:], self.data.qvel[:] = qpos, qvel
        mujoco.mj_forward(self.model, self.data)
        self.phase = self.phase if phase is None else float(phase) % 1.0
        self.speed_command = self.speed_command if speed is None else float(speed)
        return self._observe()

    def pd_target(self, action: np.ndarray) -> np.ndarray:
        """Motor position targets (10,) rad for an action (10,)."""
        if self.action_mode == "residual":
            return self.neutral + self.action_scale * action
        return np.array(action, dtype=float)

    # ---------------------------------------------------------------- internals
    def _observe(self) -> np.ndarray:
        layout, qpos, qvel = self.layout, self.data.qpos, self.data.qvel
        free_q, free_v = layout.free_qpos, layout.free_dof
        quat = qpos[free_q + 3:free_q + 7]
        w, x, y, z = quat
        yaw = math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))
        c, s = math.cos(yaw), math.sin(yaw)
        vx, vy, vz = qvel[free_v:free_v + 3]
        obs = np.empty(OBS_SIZE)
        blocks = OBS_BLOCKS
        obs[blocks["height"]] = qpos[free_q + 2]
        obs[blocks["lin_vel"]] = (c * vx + s * vy, -s * vx + c * vy, vz)
        obs[blocks["motor_vel"]] = qvel[layout.motor_dof]
        obs[blocks["passive_vel"]] = qvel[layout.passive_dof]
        obs[blocks["clock"]] = math.sin(2.0 * math.pi * self.phase), math.cos(2.0 * math.pi * self.phase)
        obs[blocks["speed"]] = self.speed_command
        if self.state_est:
            sensors = self.data.sensordata
            obs[blocks["quat"]] = sensors[layout.quat_sensor:layout.quat_sensor + 4]
            obs[blocks["motor_pos"]] = sensors[layout.motor_sensor] / layout.gear
            obs[blocks["passive_pos"]] = sensors[layout.passive_sensor]
            obs[blocks["ang_vel"]] = sensors[layout.gyro_sensor:layout.gyro_sensor + 3]
            obs += self._noise_std * self.np_random.standard_normal(OBS_SIZE)
            obs[blocks["quat"]] /= np.linalg.norm(obs[blocks["quat"]])
        else:
            obs[blocks["quat"]] = quat
            obs[blocks["motor_pos"]] = qpos[layout.motor_qpos]
            obs[blocks["passive_pos"]] = qpos[layout.passive_qpos]
            obs[blocks["ang_vel"]] = qvel[free_v + 3:free_v + 6]
        return obs.astype(np.float32)

    def _feet(self) -> dict[str, np.ndarray]:
        """Per foot (left, right): lowest capsule point above the floor (m), speed of the capsule's centre
        (m/s), vertical ground reaction force (N) and the capsule centre's world x (m)."""
        model, data, layout = self.model, self.data, self.layout
        height, speed, force, x = np.zeros(2), np.zeros(2), np.zeros(2), np.zeros(2)
        for foot, geom in enumerate(layout.foot_geoms):
            x[foot] = data.geom_xpos[geom, 0]
            radius, half_length = model.geom_size[geom, :2]
            # the capsule's axis is its local z; xmat[8] is that axis' world-z component
            height[foot] = data.geom_xpos[geom, 2] - abs(data.geom_xmat[geom, 8]) * half_length - radius
            mujoco.mj_objectVelocity(model, data, mujoco.mjtObj.mjOBJ_GEOM, geom, self._velocity, 0)
            speed[foot] = np.linalg.norm(self._velocity[3:])
        contacts = data.contact
        for i in range(data.ncon):
            # MuJoCo orders a contact's geoms by type, so the floor (a plane, type 0) is always geom1 and the
            # contact normal points from it into the foot: the normal force pushes the foot up along it
            geom1, geom2 = contacts.geom[i]
            foot = self._foot_of_geom.get(int(geom2)) if geom1 == layout.floor_geom else None
            if foot is None:
                continue
            mujoco.mj_contactForce(model, data, i, self._force)
            frame = contacts.frame[i]  # rows: normal, tangent 1, tangent 2 (world)
            force[foot] += self._force[0] * frame[2] + self._force[1] * frame[5] + self._force[2] * frame[8]
        return {"height": height, "speed": speed, "force": force, "x": x}

    def _reward_terms(self, action: np.ndarray, feet: dict[str, np.ndarray]) -> dict[str, float]:
        layout, data = self.layout, self.data
        vx = float(data.qvel[layout.free_dof])
        quat = data.qpos[layout.free_qpos + 3:layout.free_qpos + 7]
        if self.reward_cfg.name == "speed":
            return speed_reward(vx, quat)
        residual = (self._target - self.neutral) / self.action_scale if self.action_mode == "absolute" else action
        return gait_reward(self.reward_cfg, self.phase, feet["force"], feet["speed"], feet["height"], vx, self.speed_command, quat,
                           residual, data.actuator_force[layout.actuators] * layout.gear, layout.torque_limit)

    def _info(self, action: np.ndarray, terms: dict[str, float], feet: dict[str, np.ndarray] | None = None) -> dict:
        layout, data = self.layout, self.data
        feet = self._feet() if feet is None else feet
        return {
            "pelvis_height": float(data.qpos[layout.free_qpos + 2]),
            "pelvis_speed": float(data.qvel[layout.free_dof]),
            "foot_height": feet["height"],
            "foot_force": feet["force"],
            "torque": data.actuator_force[layout.actuators] * layout.gear,
            "pd_target": self._target.copy(),
            "action": np.array(action, dtype=float),
            "phase": self.phase,
            "speed_command": self.speed_command,
            "reward_terms": terms,
        }
