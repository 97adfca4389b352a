"""One pybullet world of the bumps tasks (see docs/envs/bumps.md, section Scene), in its own client.

Every :class:`BumpsScene` opens its own ``BulletClient(DIRECT)``, so any number of worlds live in one
process (training env, evaluation env, vector copies) without seeing each other's bodies.

The world (metres, kilograms, seconds; y is the travel axis, z up):

- 240 Hz physics, gravity -9.8 m/s², a ground plane and a workspace table whose top is at z = 0,
  with a mark along y at x = 0.6 where the bumps stand.
- Bumps: free bodies standing on the table at (0.6, y, 0), a cylinder (radius 20 mm, 20 mm tall)
  with a hemispherical cap (40 mm in all), 0.1 kg, friction 0.2; one compound collision shape (a
  cylinder and a sphere whose lower half lies inside it). bump1 is red, bump2 blue. With
  ``rails=True`` (the bump-target task) the single bump sits on a prismatic joint along y, so it can
  only slide along the mark.
- Finger: a box 5 × 25 × 150 mm (thin along y, the travel direction), 0.02 kg, friction 1.0,
  hanging from a revolute joint about world x 0.05 m below the carrier, limits ±1.0472 rad.
  Compliance: position control to angle 0 with the joint's maximum torque = stiffness (N·m), so
  the finger stays upright until something resists it harder than that, then swings. With the tip
  level with the table (the finger's 0.15 m is the lever arm against the bump's 0.196 N of
  friction), a soft finger rides over a bump: measured over a crossing, 0.007 N·m moves it about
  0.00015 m, 0.016 about 0.0005 m, 0.018 more than the 0.001 m that counts as moved, and from about
  0.022 N·m on the finger shoves it along (0.027 by 0.09 m; the users' figure was ≈ 0.027). The joint also has a light damping (:data:`FINGER_DAMPING`, ours,
  not the users', near-critical for the hanging finger): a servo saturated at its maximum torque
  takes no energy out of a swing, so without it the finger, once it slips off a bump, would swing
  ±0.4 rad for many actions instead of coming to rest within one or two.

**The carrier stands in for the UR5 arm and its inverse kinematics.** The users allowed it: instead
of an arm whose flange is steered by IK, the finger hangs from a carrier on two prismatic joints
(y, then z) of a fixed base, each driven by a stiff position motor (:data:`CARRIER_FORCE`); the
carrier's height is the flange height (working height 0.2 m puts the fingertip at the table top).
Moves are fed to the motors as small increments, one per 1/240 s substep at :data:`CARRIER_SPEED`,
so the finger has a real velocity and meets the bumps as a swept body, not by teleporting into
them. The finger does not collide with the table or the plane (it touches nothing but the bumps;
at working height its tip is level with the table top and would otherwise scrape it).
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import sys
from collections.abc import Iterator, Sequence

import numpy as np


@contextlib.contextmanager
def _quiet_c_output() -> Iterator[None]:
    """Silence what pybullet's C code prints (its build time on stderr at import, ``argv[0]=`` on stdout at
    connect), which would break into progress bars and logs. Exceptions still propagate as usual."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        ctypes.CDLL(None).fflush(None)  # C stdio buffers a pipe's output: flush it into /dev/null first
        for fd, copy in zip((1, 2), saved, strict=True):
            os.dup2(copy, fd)
            os.close(copy)


with _quiet_c_output():
    import pybullet
    from pybullet_utils.bullet_client import BulletClient

TIME_STEP = 1.0 / 240.0        # s, physics substep
GRAVITY = -9.8                 # m/s²
BUMP_X = 0.6                   # m, the mark the bumps stand on
BUMP_RADIUS = 0.02             # m
BUMP_CYLINDER_HEIGHT = 0.02    # m; the cap adds BUMP_RADIUS on top (40 mm in all)
BUMP_MASS = 0.1                # kg
BUMP_FRICTION = 0.2
FINGER_HALF_EXTENTS = (0.0125, 0.0025, 0.075)  # m: 25 mm along x, 5 mm along y, 150 mm along z
FINGER_MASS = 0.02             # kg
FINGER_FRICTION = 1.0
FINGER_JOINT_DROP = 0.05       # m, the finger joint below the carrier
FINGER_LIMIT = 1.0472          # rad, finger joint limits ±
FINGER_DAMPING = 0.002         # N·m·s/rad, finger joint damping (see the module doc)
WORKING_HEIGHT = 0.2           # m, carrier height while touching the bumps
LIFT_HEIGHT = 0.35             # m, carrier height while travelling above them
CARRIER_SPEED = 0.25           # m/s, carrier speed along y and z
CARRIER_FORCE = 500.0          # N, the carrier motors' force: the finger cannot hold the carrier back
SETTLE_SUBSTEPS = 12           # substeps (50 ms) after each move, carrier at rest, for the finger to settle
CAMERA_SIZE = (320, 240)       # pixels, width × height of render()

_Y_JOINT, _Z_JOINT, _FINGER_JOINT = 0, 1, 2
_BUMP_COLOURS = ((0.85, 0.15, 0.15, 1.0), (0.15, 0.3, 0.85, 1.0))  # bump1 red, bump2 blue


class BumpsScene:
    """A pybullet world with a table, bumps and the compliant finger; built anew by :meth:`build`.

    All positions are world metres; ``finger_y`` is the y of the carrier (and of the finger joint).
    """

    def __init__(self) -> None:
        with _quiet_c_output():
            self.client: BulletClient | None = BulletClient(connection_mode=pybullet.DIRECT)
        self.bumps: list[int] = []
        self.finger = -1
        self.rails = False
        self._carrier = np.zeros(2)  # commanded carrier (y, z), m

    # -- building ---------------------------------------------------------------------------------
    def build(self, bump_ys: Sequence[float], finger_y: float, rails: bool = False) -> None:
        """A fresh world: bumps at ``bump_ys`` (left to right), the carrier at lift height above
        ``finger_y``, then lowered to working height (the bumps settle meanwhile).

        The world is rebuilt rather than its bodies moved back, so that an episode depends only on
        its layout and actions, not on solver state left over from the previous episode.
        """
        c = self._live()
        c.resetSimulation()
        c.setTimeStep(TIME_STEP)
        c.setGravity(0, 0, GRAVITY)
        self.rails = rails
        ground = c.createMultiBody(0, c.createCollisionShape(pybullet.GEOM_PLANE), basePosition=(0, 0, -0.05))
        table = c.createMultiBody(
            0,
            c.createCollisionShape(pybullet.GEOM_BOX, halfExtents=(0.3, 0.5, 0.025)),
            c.createVisualShape(pybullet.GEOM_BOX, halfExtents=(0.3, 0.5, 0.025), rgbaColor=(0.75, 0.6, 0.45, 1)),
            basePosition=(BUMP_X, 0, -0.025),
        )
        c.createMultiBody(0, -1, c.createVisualShape(pybullet.GEOM_BOX, halfExtents=(0.002, 0.45, 0.0005),
                                                      rgbaColor=(0.1, 0.1, 0.1, 1)), basePosition=(BUMP_X, 0, 0.0005))
        for body in (ground, table):
            c.changeDynamics(body, -1, lateralFriction=1.0)  # bump–table friction = product = BUMP_FRICTION
        self.bumps = [self._make_bump(y, colour) for y, colour in zip(bump_ys, _BUMP_COLOURS, strict=False)]
        self.finger = self._make_finger(finger_y)
        for body in (ground, table):
            c.setCollisionFilterPair(self.finger, body, _FINGER_JOINT, -1, 0)
        self.move_carrier(finger_y, WORKING_HEIGHT)
        self.settle()

    def _make_bump(self, y: float, colour: Sequence[float]) -> int:
        c = self._live()
        r, h = BUMP_RADIUS, BUMP_CYLINDER_HEIGHT
        types, radii, lengths = [pybullet.GEOM_CYLINDER, pybullet.GEOM_SPHERE], [r, r], [h, 0.0]
        frames = [[0, 0, h / 2], [0, 0, h]]
        collision = c.createCollisionShapeArray(types, radii=radii, lengths=lengths, collisionFramePositions=frames)
        visual = c.createVisualShapeArray(types, radii=radii, lengths=lengths, visualFramePositions=frames,
                                          rgbaColors=[colour, colour])
        # centre of mass of the cylinder + hemisphere solid, above its base (the body frame is the base centre)
        v_cyl, v_cap = math.pi * r * r * h, 2.0 / 3.0 * math.pi * r ** 3
        com = (v_cyl * h / 2 + v_cap * (h + 3 * r / 8)) / (v_cyl + v_cap)
        if not self.rails:
            body = c.createMultiBody(BUMP_MASS, collision, visual, basePosition=(BUMP_X, y, 0.0),
                                     baseInertialFramePosition=(0, 0, com))
            c.changeDynamics(body, -1, lateralFriction=BUMP_FRICTION)
            return body
        body = c.createMultiBody(
            0, -1, -1, basePosition=(BUMP_X, 0.0, 0.0),
            linkMasses=[BUMP_MASS], linkCollisionShapeIndices=[collision], linkVisualShapeIndices=[visual],
            linkPositions=[(0, 0, 0)], linkOrientations=[(0, 0, 0, 1)], linkInertialFramePositions=[(0, 0, com)],
            linkInertialFrameOrientations=[(0, 0, 0, 1)], linkParentIndices=[0],
            linkJointTypes=[pybullet.JOINT_PRISMATIC], linkJointAxis=[(0, 1, 0)],
        )
        c.changeDynamics(body, 0, lateralFriction=BUMP_FRICTION)
        c.setJointMotorControl2(body, 0, pybullet.VELOCITY_CONTROL, force=0.0)  # free to slide: no default joint motor
        c.resetJointState(body, 0, y)
        return body

    def _make_finger(self, y: float) -> int:
        c = self._live()
        half_length = FINGER_HALF_EXTENTS[2]
        below = (0, 0, -half_length)  # the box hangs from the joint
        finger_collision = c.createCollisionShape(pybullet.GEOM_BOX, halfExtents=FINGER_HALF_EXTENTS, collisionFramePosition=below)
        finger_visual = c.createVisualShape(pybullet.GEOM_BOX, halfExtents=FINGER_HALF_EXTENTS, visualFramePosition=below,
                                            rgbaColor=(0.2, 0.2, 0.2, 1))
        # the carrier drawn as a block from 20 mm above its frame down to the finger joint
        carrier_visual = c.createVisualShape(pybullet.GEOM_BOX, halfExtents=(0.015, 0.015, 0.035), visualFramePosition=(0, 0, -0.015),
                                             rgbaColor=(0.6, 0.6, 0.6, 1))
        body = c.createMultiBody(
            0, -1, -1, basePosition=(BUMP_X, 0.0, 0.0),
            linkMasses=[1.0, 1.0, FINGER_MASS],
            linkCollisionShapeIndices=[-1, -1, finger_collision],
            linkVisualShapeIndices=[-1, carrier_visual, finger_visual],
            linkPositions=[(0, 0, 0), (0, 0, 0), (0, 0, -FINGER_JOINT_DROP)],
            linkOrientations=[(0, 0, 0, 1)] * 3,
            linkInertialFramePositions=[(0, 0, 0), (0, 0, 0), (0, 0, -half_length)],
            linkInertialFrameOrientations=[(0, 0, 0, 1)] * 3,
            linkParentIndices=[0, 1, 2],
            linkJointTypes=[pybullet.JOINT_PRISMATIC, pybullet.JOINT_PRISMATIC, pybullet.JOINT_REVOLUTE],
            linkJointAxis=[(0, 1, 0), (0, 0, 1), (1, 0, 0)],
        )
        c.changeDynamics(body, _FINGER_JOINT, lateralFriction=FINGER_FRICTION, jointDamping=FINGER_DAMPING,
                         jointLowerLimit=-FINGER_LIMIT, jointUpperLimit=FINGER_LIMIT)
        c.resetJointState(body, _Y_JOINT, y)
        c.resetJointState(body, _Z_JOINT, LIFT_HEIGHT)
        self._carrier = np.array([y, LIFT_HEIGHT])
        return body

    # -- acting -----------------------------------------------------------------------------------
    def set_stiffness(self, stiffness: float) -> None:
        """Hold the finger at angle 0 with at most ``stiffness`` N·m of joint torque."""
        self._live().setJointMotorControl2(self.finger, _FINGER_JOINT, pybullet.POSITION_CONTROL, targetPosition=0.0,
                                           force=float(stiffness))

    def move_carrier(self, y: float, z: float | None = None) -> None:
        """Drive the carrier in a straight line to (``y``, ``z``) at :data:`CARRIER_SPEED`, one small
        increment (at most 1.04 mm) per substep; no substep if it is already there."""
        c = self._live()
        start = self._carrier.copy()
        goal = np.array([y, start[1] if z is None else z])
        n = math.ceil(float(np.max(np.abs(goal - start))) / (CARRIER_SPEED * TIME_STEP) - 1e-9)
        velocity = (goal - start) / (n * TIME_STEP) if n else np.zeros(2)
        for i in range(1, n + 1):
            self._carrier = start + (goal - start) * (i / n)
            self._drive(velocity)
            c.stepSimulation()

    def settle(self, substeps: int = SETTLE_SUBSTEPS) -> None:
        """Hold the carrier still for ``substeps`` substeps."""
        c = self._live()
        self._drive(np.zeros(2))
        for _ in range(substeps):
            c.stepSimulation()

    def _drive(self, velocity: np.ndarray) -> None:
        self._live().setJointMotorControlArray(
            self.finger, [_Y_JOINT, _Z_JOINT], pybullet.POSITION_CONTROL, targetPositions=self._carrier.tolist(),
            targetVelocities=velocity.tolist(), forces=[CARRIER_FORCE] * 2)

    # -- reading ----------------------------------------------------------------------------------
    @property
    def carrier_y(self) -> float:
        """The commanded carrier y, m (exact; the measured one lags it by well under a millimetre)."""
        return float(self._carrier[0])

    def finger_y(self) -> float:
        """Measured y of the carrier and finger joint, m."""
        return float(self._live().getJointState(self.finger, _Y_JOINT)[0])

    def finger_angle(self) -> float:
        """Finger joint angle, rad, about world x: positive swings the fingertip towards +y."""
        return float(self._live().getJointState(self.finger, _FINGER_JOINT)[0])

    def bump_ys(self) -> np.ndarray:
        """y of each bump's base centre, m, shape (n_bumps,)."""
        c = self._live()
        if self.rails:
            return np.array([c.getJointState(b, 0)[0] for b in self.bumps])
        return np.array([c.getBasePositionAndOrientation(b)[0][1] for b in self.bumps])

    def render(self) -> np.ndarray:
        """An RGB picture (240, 320, 3) uint8 of the bumps and finger, seen from the front and above."""
        c = self._live()
        width, height = CAMERA_SIZE
        view = c.computeViewMatrix(cameraEyePosition=(BUMP_X + 0.75, 0.0, 0.35), cameraTargetPosition=(BUMP_X, 0.0, 0.05),
                                   cameraUpVector=(0, 0, 1))
        projection = c.computeProjectionMatrixFOV(fov=45.0, aspect=width / height, nearVal=0.05, farVal=5.0)
        _, _, rgba, _, _ = c.getCameraImage(width, height, view, projection, renderer=pybullet.ER_TINY_RENDERER)
        return np.asarray(rgba, dtype=np.uint8).reshape(height, width, 4)[:, :, :3].copy()

    def close(self) -> None:
        """Disconnect the client; later calls are no-ops."""
        if self.client is not None:
            self.client.disconnect()
            self.client = None

    def _live(self) -> BulletClient:
        if self.client is None:
            raise RuntimeError("this bumps world is closed")
        return self.client
