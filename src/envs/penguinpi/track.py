"""The simulated arena: a closed road loop on a tiled floor, and the robot's camera that renders it.

Track: a rounded rectangle (centre line 3.0 m x 2.0 m, corner radius 0.5 m, centred on the origin) of road 0.25 m
wide, grey with white edge lines 2 cm wide, on a brown floor tiled in 0.3 m squares of two shades (so that driving
along a straight changes the image). World frame as in ``robot``: x, y in m, theta from +x towards +y.

Camera: a pinhole 0.08 m ahead of the wheel axle and 0.1 m above the floor, tilted 20 degrees down, 60 degrees
horizontal field of view, 320 x 240 RGB. Each pixel's ray is intersected with the floor once (robot-frame offsets
precomputed); a frame only moves those points by the true pose and colours them, so it is a few ms of numpy.
Rays at or above the horizon see the wall. The bottom 80 rows see the floor 0.11 m to 0.19 m ahead of the camera.
"""

from __future__ import annotations

import math

import numpy as np

HALF_LENGTH = 1.5  # m, half the centre line's extent along x
HALF_WIDTH = 1.0  # m, half the centre line's extent along y
CORNER_RADIUS = 0.5  # m
ROAD_HALF_WIDTH = 0.125  # m
LINE_WIDTH = 0.02  # m, white edge lines inside the road's edges
TILE = 0.3  # m, floor tile size

ROAD = np.array([110, 110, 110], dtype=np.uint8)
LINE = np.array([235, 235, 235], dtype=np.uint8)
FLOOR = np.array([[150, 108, 66], [132, 94, 58]], dtype=np.uint8)  # the two tile shades
WALL = np.array([196, 206, 220], dtype=np.uint8)

WIDTH, HEIGHT = 320, 240  # px
CAMERA_FORWARD = 0.08  # m ahead of the wheel axle
CAMERA_HEIGHT = 0.1  # m
CAMERA_TILT = math.radians(20.0)  # down from horizontal
CAMERA_HFOV = math.radians(60.0)


def centre_distance(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Signed distance (m) of floor points from the road's centre line (negative inside the loop); any shape."""
    qx = np.abs(x) - (HALF_LENGTH - CORNER_RADIUS)
    qy = np.abs(y) - (HALF_WIDTH - CORNER_RADIUS)
    outside = np.hypot(np.maximum(qx, 0.0), np.maximum(qy, 0.0))
    return outside + np.minimum(np.maximum(qx, qy), 0.0) - CORNER_RADIUS


def start_pose(rng: np.random.Generator) -> tuple[float, float, float]:
    """A random start (x, y, theta) on one of the four straights, within 3 cm of the centre line and 0.1 rad of
    its direction, driving either way round."""
    side = int(rng.integers(4))
    along = float(rng.uniform(-1.0, 1.0))
    lateral = float(rng.uniform(-0.03, 0.03))
    if side % 2 == 0:  # the straights at y = +-HALF_WIDTH, along x
        x = along * (HALF_LENGTH - CORNER_RADIUS)
        y = (HALF_WIDTH + lateral) * (1 if side == 0 else -1)
        heading = 0.0
    else:  # the straights at x = +-HALF_LENGTH, along y
        x = (HALF_LENGTH + lateral) * (1 if side == 1 else -1)
        y = along * (HALF_WIDTH - CORNER_RADIUS)
        heading = math.pi / 2
    heading += math.pi * int(rng.integers(2)) + float(rng.uniform(-0.1, 0.1))
    return x, y, math.atan2(math.sin(heading), math.cos(heading))


def track_share(image: np.ndarray) -> float:
    """Share in [0, 1] of road-grey pixels in an RGB uint8 image (..., 3): nearly colourless and of mid brightness,
    so white lines, floor and wall do not count. The users' reward is built on it."""
    pixels = image.reshape(-1, 3).astype(np.int16)
    chroma = pixels.max(axis=1) - pixels.min(axis=1)
    brightness = pixels.mean(axis=1)
    grey = (chroma < 20) & (brightness > 70) & (brightness < 160)
    return float(grey.mean())


class Camera:
    """Renders the 240 x 320 x 3 uint8 RGB view of a robot at a given true pose."""

    def __init__(self):
        focal = (WIDTH / 2) / math.tan(CAMERA_HFOV / 2)  # px
        u = (np.arange(WIDTH) + 0.5 - WIDTH / 2) / focal  # right, per unit depth
        v = (np.arange(HEIGHT) + 0.5 - HEIGHT / 2) / focal  # down, per unit depth
        right, down_image = np.meshgrid(u, v)  # (240, 320)
        # ray = optical axis + right * x_right + down_image * image-down axis, in (forward, right, down) coordinates
        forward = math.cos(CAMERA_TILT) - down_image * math.sin(CAMERA_TILT)
        down = math.sin(CAMERA_TILT) + down_image * math.cos(CAMERA_TILT)
        self._floor = down > 1e-6  # rays that hit the floor
        scale = CAMERA_HEIGHT / down[self._floor]
        self._forward = CAMERA_FORWARD + forward[self._floor] * scale  # m ahead of the axle, per floor pixel
        self._right = right[self._floor] * scale  # m to the robot's right, per floor pixel

    def render(self, x: float, y: float, theta: float) -> np.ndarray:
        """The view from true pose (x m, y m, theta rad): (240, 320, 3) uint8 RGB."""
        cos, sin = math.cos(theta), math.sin(theta)
        # the robot's right is the direction its heading turns to as theta grows: (-sin, cos)
        wx = x + self._forward * cos - self._right * sin
        wy = y + self._forward * sin + self._right * cos
        distance = np.abs(centre_distance(wx, wy))
        tile = (np.floor(wx / TILE).astype(np.int64) + np.floor(wy / TILE).astype(np.int64)) % 2
        colours = FLOOR[tile]
        colours[distance <= ROAD_HALF_WIDTH] = ROAD
        colours[(distance <= ROAD_HALF_WIDTH) & (distance > ROAD_HALF_WIDTH - LINE_WIDTH)] = LINE
        image = np.empty((HEIGHT, WIDTH, 3), dtype=np.uint8)
        image[:] = WALL
        image[self._floor] = colours
        return image
