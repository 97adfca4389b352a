"""The Agility Cassie model from MuJoCo Menagerie: loading, the PD servos, and where things live in it.

Model facts (``agility_cassie/scene.xml``): timestep 0.5 ms (2 kHz), ``nq`` 35, ``nv`` 32, ``nu`` 10. The ten
actuators are motors on the joints hip-roll, hip-yaw, hip-pitch, knee, foot (left leg, then right) with gear
[25, 25, 16, 16, 50] and ``ctrlrange`` ±[4.5, 4.5, 12.2, 12.2, 0.9] (motor-side torque, Nm). The shin and
tarsus joints are passive (the shin is a leaf spring, 1500 Nm/rad); each leg also has a ball joint
(achilles rod) and the heel-spring, foot-crank and plantar-rod hinges of the closed linkages. One keyframe,
``home``: standing, pelvis 1.006 m high. Every address is looked up by name, so a reordered model still works.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from hydrarl.errors import UserError

MENAGERIE_NAME = "agility_cassie"
SIDES = ("left", "right")
MOTOR_JOINTS = ("hip-roll", "hip-yaw", "hip-pitch", "knee", "foot")  # actuator order within a leg
PASSIVE_JOINTS = ("shin", "tarsus")  # unactuated joints in the observation
P_GAIN = np.array([100.0, 100.0, 88.0, 96.0, 50.0] * 2)  # motor torque per rad of joint error, Nm/rad (the users' PD)
D_GAIN = np.array([10.0, 10.0, 8.0, 9.6, 5.0] * 2)  # motor torque per rad/s of joint velocity, Nm·s/rad
_INSTABILITY = (
    mujoco.mjtWarning.mjWARN_BADQPOS,
    mujoco.mjtWarning.mjWARN_BADQVEL,
    mujoco.mjtWarning.mjWARN_BADQACC,
    mujoco.mjtWarning.mjWARN_BADCTRL,
)


def load_model() -> mujoco.MjModel:
    """The Menagerie Cassie scene (robot + floor), compiled; a UserError that says how to fix it if it
    cannot be had (no internet on first use and no ``MENAGERIE_ROOT``, or a ``MENAGERIE_ROOT`` without it)."""
    import mujoco_menagerie  # deferred: registering the env must not import it

    try:
        return mujoco_menagerie.load(MENAGERIE_NAME)
    except (mujoco_menagerie.MenagerieError, ValueError) as exc:  # ValueError: MuJoCo cannot compile the XML
        raise UserError(
            f"The Cassie env cannot load the MuJoCo Menagerie model '{MENAGERIE_NAME}': {exc}. Either run once "
            "with internet access (mujoco-menagerie downloads and caches the model on first use), or point it at "
            "a local copy of the menagerie: export MENAGERIE_ROOT=<path to a menagerie copy>, e.g. "
            "export MENAGERIE_ROOT=$(realpath ../shared/menagerie) from the project's root."
        ) from exc


def install_pd_servos(model: mujoco.MjModel, p_gain: np.ndarray = P_GAIN, d_gain: np.ndarray = D_GAIN) -> None:
    """Turn the ten motors of ``model`` (in place) into PD position servos that MuJoCo runs every substep.

    The law, as the Cassie simulator our users had applies it: the motor torque τ_m = P·(target − q) − D·q̇,
    with q, q̇ the joint (output-side) position and velocity, clipped to the motor's ``ctrlrange``; the joint
    receives gear·τ_m. (The gains act on motor torque: read as joint-side gains, P = 96 Nm/rad at the knee
    could not carry the robot's weight without folding.) A joint transmission with gear g has actuator length
    l = g·q, velocity l̇ = g·q̇ and applies the joint torque g·f for actuator force f. With gain type fixed
    (f = kp·ctrl + bias), bias type affine (bias = 0 − kp·l − kv·l̇) and ctrl = g·target:

        f = kp·g·target − kp·g·q − kv·g·q̇ = kp·g·(target − q) − kv·g·q̇

    so kp = P/g and kv = D/g give f = τ_m exactly. ``forcerange`` = the old ``ctrlrange`` clips f; ctrl is no
    longer a torque, so its limit is switched off. ``p_gain``, ``d_gain``: (10,) gains in actuator order.

    The integrator becomes ``implicitfast``, which treats the servos' damping implicitly: at the foot the
    joint-side damping D·g = 250 N·m·s/rad on a 0.0122 kg·m² armature is far past explicit Euler's stability
    at 0.5 ms (D·g·dt/I ≈ 10 > 2), and the foot joint chattered at ±0.7 rad/s while standing."""
    model.opt.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    gear = model.actuator_gear[:, 0].copy()
    kp, kv = p_gain / gear, d_gain / gear
    model.actuator_forcerange[:] = model.actuator_ctrlrange
    model.actuator_forcelimited[:] = 1
    model.actuator_ctrllimited[:] = 0
    model.actuator_gaintype[:] = mujoco.mjtGain.mjGAIN_FIXED
    model.actuator_biastype[:] = mujoco.mjtBias.mjBIAS_AFFINE
    model.actuator_gainprm[:] = 0.0
    model.actuator_biasprm[:] = 0.0
    model.actuator_gainprm[:, 0] = kp
    model.actuator_biasprm[:, 1] = -kp
    model.actuator_biasprm[:, 2] = -kv


def instability_count(data: mujoco.MjData) -> int:
    """How often MuJoCo has found a non-finite or huge position, velocity, acceleration or control since the
    last reset; it then resets the state to ``qpos0`` (or zeroes the control) and goes on."""
    return int(sum(data.warning[w].number for w in _INSTABILITY))


def _ids(model: mujoco.MjModel, kind: mujoco.mjtObj, names: list[str]) -> np.ndarray:
    ids = [mujoco.mj_name2id(model, kind, name) for name in names]
    missing = [name for name, i in zip(names, ids, strict=True) if i < 0]
    if missing:
        raise UserError(f"The Cassie model has no {kind.name[6:].lower()} named {', '.join(missing)}: not the Menagerie model?")
    return np.array(ids)


@dataclass(frozen=True)
class CassieLayout:
    """Addresses and constants of a loaded Cassie model, looked up by name. Arrays over the ten motors are in
    actuator order (left hip-roll, hip-yaw, hip-pitch, knee, foot, then right); over the four passive joints
    left shin, left tarsus, right shin, right tarsus."""

    actuators: np.ndarray  # (10,) actuator ids of the motors
    free_qpos: int  # qpos[free_qpos:+7] = pelvis position (m, world) and quaternion w, x, y, z
    free_dof: int  # qvel[free_dof:+6] = pelvis linear velocity (m/s, world) and angular velocity (rad/s, pelvis frame)
    motor_qpos: np.ndarray  # (10,) qpos addresses of the motor joints
    motor_dof: np.ndarray  # (10,) qvel addresses
    passive_qpos: np.ndarray  # (4,)
    passive_dof: np.ndarray  # (4,)
    gear: np.ndarray  # (10,) actuator gear (motor turns per joint turn)
    torque_limit: np.ndarray  # (10,) joint-side torque limit gear·ctrlrange, Nm
    joint_range: np.ndarray  # (10, 2) motor joint ranges, rad
    neutral: np.ndarray  # (10,) motor joint positions of the `home` keyframe, rad
    motor_sensor: np.ndarray  # (10,) sensordata addresses of the `*-input` sensors (actuator position = gear·q)
    passive_sensor: np.ndarray  # (4,) sensordata addresses of the shin/tarsus `*-output` joint-position sensors
    quat_sensor: int  # sensordata[quat_sensor:+4]: `pelvis-orientation` (w, x, y, z)
    gyro_sensor: int  # sensordata[gyro_sensor:+3]: `pelvis-angular-velocity`, rad/s, pelvis frame
    sensor_noise: np.ndarray  # (21,) noise std of those readings in joint units: motors (10), passive (4), quat (4), gyro (3)
    home_key: int  # keyframe id of `home`
    foot_geoms: np.ndarray  # (2,) the collision capsule of the left and right foot
    floor_geom: int

    @classmethod
    def from_model(cls, model: mujoco.MjModel) -> CassieLayout:
        obj = mujoco.mjtObj
        motors = [f"{side}-{joint}" for side in SIDES for joint in MOTOR_JOINTS]
        passive = [f"{side}-{joint}" for side in SIDES for joint in PASSIVE_JOINTS]
        actuators = _ids(model, obj.mjOBJ_ACTUATOR, motors)
        motor_joints = model.actuator_trnid[actuators, 0]
        passive_joints = _ids(model, obj.mjOBJ_JOINT, passive)
        free = int(np.flatnonzero(model.jnt_type == mujoco.mjtJoint.mjJNT_FREE)[0])
        feet = _ids(model, obj.mjOBJ_BODY, [f"{side}-foot" for side in SIDES])
        home = int(_ids(model, obj.mjOBJ_KEY, ["home"])[0])
        sensor_names = [f"{m}-input" for m in motors] + [f"{p}-output" for p in passive]
        sensor_ids = _ids(model, obj.mjOBJ_SENSOR, [*sensor_names, "pelvis-orientation", "pelvis-angular-velocity"])
        quat_id, gyro_id = sensor_ids[-2:]
        motor_qpos = model.jnt_qposadr[motor_joints]
        return cls(
            actuators=actuators,
            free_qpos=int(model.jnt_qposadr[free]),
            free_dof=int(model.jnt_dofadr[free]),
            motor_qpos=motor_qpos,
            motor_dof=model.jnt_dofadr[motor_joints],
            passive_qpos=model.jnt_qposadr[passive_joints],
            passive_dof=model.jnt_dofadr[passive_joints],
            gear=model.actuator_gear[actuators, 0].copy(),
            torque_limit=model.actuator_gear[actuators, 0] * model.actuator_ctrlrange[actuators, 1],
            joint_range=model.jnt_range[motor_joints].copy(),
            neutral=model.key_qpos[home, motor_qpos].copy(),
            motor_sensor=model.sensor_adr[sensor_ids[:10]],
            passive_sensor=model.sensor_adr[sensor_ids[10:14]],
            quat_sensor=int(model.sensor_adr[quat_id]),
            gyro_sensor=int(model.sensor_adr[gyro_id]),
            sensor_noise=np.concatenate([model.sensor_noise[sensor_ids[:10]] / model.actuator_gear[actuators, 0],
                                         model.sensor_noise[sensor_ids[10:14]],
                                         np.repeat(model.sensor_noise[[quat_id, gyro_id]], [4, 3])]),
            home_key=home,
            foot_geoms=np.array([int(np.flatnonzero(model.geom_bodyid == foot)[0]) for foot in feet]),
            floor_geom=int(_ids(model, obj.mjOBJ_GEOM, ["floor"])[0]),
        )
