"""HTTP server of the simulated PenguinPi: the real robot's API (docs/envs/penguinpi.md) over ``robot`` and ``track``.

Run: ``python -m hydrarl.envs.penguinpi.sim_server --port 8080 [--host 127.0.0.1] [--seed 0] [--speedup 1.0]``
(``--port 0``: a port the OS picks, printed once listening). A bad option, or an address it cannot listen on (a busy
port, a host that is not this machine's), is one ``error:`` line on stderr and exit status 2.

Endpoints, all GET (errors: HTTP 400 with JSON ``{"message": ...}``; unknown paths 404 with the same body):

- ``/robot/set/velocity?value=L,R[&time=T[&accel=Ta]]``: L, R integers in [-100, 100]. Without ``time`` the speed
  persists; with it the call blocks for T s of sim time (0.05 s command ticks; ``accel`` ramps linearly up over
  the first Ta and down over the last Ta, T > 2 * Ta), then stops both motors. JSON
  ``{"encoder": {"left": i, "right": i}, "pose": {"x": f, "y": f, "theta": f}}`` (pose = odometry).
- ``/robot/stop``: zero the motors; the same JSON.
- ``/robot/get/encoder``: text ``"L,R"``; ``/robot/hw/reset``: zero the encoders (empty body).
- ``/robot/get/pose``: text ``"x,y,theta"`` (odometry); ``/robot/pose/reset``: zero it (empty body).
- ``/camera/get``: 320 x 240 RGB PNG of the true pose's view.
- ``/battery/get/voltage``, ``/battery/get/current``: text, mV and mA.

Simulator only (not on the real robot): ``/sim/reset[?x=&y=&theta=]`` places the robot (m, m, rad; without
arguments at a start pose on the track from the seeded RNG) at rest with zeroed encoders and odometry;
``/sim/state`` JSON of the sim time, motor commands, true pose and the number of stops received;
``/sim/fail`` answers HTTP 500 (to test clients).

Time: the sim keeps its own clock. Timed moves advance it by their T and sleep T / speedup of wall time
(speedup 0: no sleep). Between requests the sim follows wall time x speedup, advanced at the start of each
request (speedup 0: it stands still). One lock guards the robot; timed moves are serialised by a second one.
"""

from __future__ import annotations

import argparse
import errno
import io
import math
import os
import signal
import socket
import sys
import threading
import time

import numpy as np
from flask import Flask, Response, jsonify, request
from PIL import Image
from werkzeug.serving import LISTEN_QUEUE, BaseWSGIServer, WSGIRequestHandler, make_server

from hydrarl.cli_args import ArgumentParser, number
from hydrarl.envs.penguinpi.robot import COMMAND_LIMIT, MAX_MOVE_TIME, TICK, Pose, Robot
from hydrarl.envs.penguinpi.track import Camera, start_pose
from hydrarl.errors import UserError, exit_on_user_error

COMMAND_TICK_TICKS = 5  # physics ticks per 0.05 s command tick of a timed move


class BadRequest(Exception):
    """A request parameter is missing or wrong; answered with HTTP 400 and this message."""


class Simulator:
    """The robot, its camera and the clock that ties sim time to wall time; thread-safe."""

    def __init__(self, seed: int = 0, speedup: float = 1.0):
        self.rng = np.random.default_rng(seed)
        self.speedup = speedup
        self.robot = Robot(self.rng, Pose(*start_pose(self.rng)))
        self.camera = Camera()
        self.stops = 0  # /robot/stop requests received
        self.lock = threading.Lock()  # guards robot, stops and the wall-clock reference
        self._move_lock = threading.Lock()  # one timed move at a time
        self._moving = False  # a timed move owns the clock: between-request catch-up is off
        self._wall_ref = time.monotonic()

    def catch_up(self) -> None:
        """Advance the sim to wall-clock now x speedup (caller holds ``lock``)."""
        now = time.monotonic()
        if self.speedup <= 0 or self._moving:
            self._wall_ref = now
            return
        ticks = int((now - self._wall_ref) * self.speedup / TICK)
        self.robot.step(ticks)
        self._wall_ref += ticks * TICK / self.speedup

    def timed_move(self, left: int, right: int, duration: float, accel: float | None) -> None:
        """Drive for ``duration`` s of sim time in 0.05 s command ticks (ramped over ``accel`` s), then stop."""
        total = round(duration / TICK)
        with self._move_lock:
            with self.lock:
                self.catch_up()
                self._moving = True
            wall_start = time.monotonic()
            try:
                for start in range(0, total, COMMAND_TICK_TICKS):
                    ticks = min(COMMAND_TICK_TICKS, total - start)
                    factor = 1.0
                    if accel:
                        middle = (start + ticks / 2) * TICK
                        factor = min(1.0, middle / accel, (duration - middle) / accel)
                    with self.lock:
                        self.robot.set_command(round(left * factor), round(right * factor))
                        self.robot.step(ticks)
                    if self.speedup > 0:
                        time.sleep(max(0.0, wall_start + (start + ticks) * TICK / self.speedup - time.monotonic()))
            finally:
                with self.lock:
                    self.robot.brake()
                    self._moving = False
                    self._wall_ref = time.monotonic()

    def state_json(self) -> Response:
        """The set/velocity and stop answer: encoders and odometry (caller holds ``lock``)."""
        left, right = self.robot.encoders()
        pose = self.robot.odometry
        return jsonify(encoder={"left": left, "right": right}, pose={"x": pose.x, "y": pose.y, "theta": pose.theta})

    def png(self) -> bytes:
        """The camera's current view as PNG bytes (caller holds ``lock``)."""
        pose = self.robot.true_pose
        buffer = io.BytesIO()
        Image.fromarray(self.camera.render(pose.x, pose.y, pose.theta)).save(buffer, format="PNG", compress_level=1)
        return buffer.getvalue()


def _float_param(name: str) -> float | None:
    """Query parameter ``name`` as a finite float, or None when absent."""
    text = request.args.get(name)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise BadRequest(f"parameter '{name}' must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise BadRequest(f"parameter '{name}' must be finite, got {text!r}")
    return value


def _velocity_params() -> tuple[int, int, float | None, float | None]:
    """(left, right, time, accel) of a set/velocity request, validated."""
    text = request.args.get("value")
    if text is None:
        raise BadRequest("missing parameter 'value' (expected value=L,R with integers in [-100, 100])")
    parts = text.split(",")
    if len(parts) != 2:
        raise BadRequest(f"parameter 'value' must be two comma-separated integers L,R, got {text!r}")
    try:
        left, right = (int(part) for part in parts)
    except ValueError:
        raise BadRequest(f"parameter 'value' must hold integers, got {text!r}") from None
    if max(abs(left), abs(right)) > COMMAND_LIMIT:
        raise BadRequest(f"parameter 'value' must lie in [-{COMMAND_LIMIT}, {COMMAND_LIMIT}], got {text!r}")
    duration, accel = _float_param("time"), _float_param("accel")
    if duration is not None and not 0 <= duration <= MAX_MOVE_TIME:
        raise BadRequest(f"parameter 'time' must lie in [0, {MAX_MOVE_TIME:g}] s, got {duration:g}")
    if accel is not None:
        if duration is None:
            raise BadRequest("parameter 'accel' needs 'time'")
        if accel < 0 or duration <= 2 * accel:
            raise BadRequest(f"'accel' must be >= 0 with time > 2 * accel, got time={duration:g}, accel={accel:g}")
    return left, right, duration, accel


def create_app(sim: Simulator) -> Flask:
    """The Flask app serving ``sim``."""
    app = Flask("penguinpi_sim")

    @app.errorhandler(BadRequest)
    def bad_request(exc: BadRequest):
        return jsonify(message=str(exc)), 400

    @app.errorhandler(404)
    def not_found(_exc):
        return jsonify(message=f"unknown endpoint {request.path}"), 404

    @app.before_request
    def advance_clock():
        with sim.lock:
            sim.catch_up()

    def text(body: str) -> Response:
        return Response(body, mimetype="text/plain")

    @app.get("/robot/set/velocity")
    def set_velocity():
        left, right, duration, accel = _velocity_params()
        if duration is not None:
            sim.timed_move(left, right, duration, accel)
        else:
            with sim.lock:
                sim.robot.set_command(left, right)
        with sim.lock:
            return sim.state_json()

    @app.get("/robot/stop")
    def stop():
        with sim.lock:
            sim.robot.brake()
            sim.stops += 1
            return sim.state_json()

    @app.get("/robot/get/encoder")
    def get_encoder():
        with sim.lock:
            return text("{},{}".format(*sim.robot.encoders()))

    @app.get("/robot/hw/reset")
    def hw_reset():
        with sim.lock:
            sim.robot.reset_encoders()
        return text("")

    @app.get("/robot/pose/reset")
    def pose_reset():
        with sim.lock:
            sim.robot.reset_odometry()
        return text("")

    @app.get("/robot/get/pose")
    def get_pose():
        with sim.lock:
            pose = sim.robot.odometry
            return text(f"{pose.x},{pose.y},{pose.theta}")

    @app.get("/camera/get")
    def camera():
        with sim.lock:
            return Response(sim.png(), mimetype="image/png")

    @app.get("/battery/get/voltage")
    def voltage():
        with sim.lock:
            return text(str(sim.robot.battery_mv()))

    @app.get("/battery/get/current")
    def current():
        with sim.lock:
            return text(str(sim.robot.battery_ma()))

    @app.get("/sim/reset")
    def sim_reset():
        values = [_float_param(name) for name in ("x", "y", "theta")]
        given = [value is not None for value in values]
        if any(given) and not all(given):
            raise BadRequest("give all of x, y, theta or none")
        with sim.lock:
            sim.robot.place(Pose(*values) if all(given) else Pose(*start_pose(sim.rng)))
        return text("")

    @app.get("/sim/state")
    def sim_state():
        with sim.lock:
            pose = sim.robot.true_pose
            return jsonify(time=sim.robot.time, command=list(sim.robot.command), stops=sim.stops,
                           true_pose={"x": pose.x, "y": pose.y, "theta": pose.theta})

    @app.get("/sim/fail")
    def sim_fail():
        return jsonify(message="simulated server failure"), 500

    return app


class _QuietHandler(WSGIRequestHandler):
    """HTTP/1.1 keep-alive (a client's session reuses its connection) and no per-request log lines."""

    protocol_version = "HTTP/1.1"

    def log_request(self, *args, **kwargs) -> None:
        pass


PROG = "python -m hydrarl.envs.penguinpi.sim_server"


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog=PROG, description="Simulated PenguinPi robot (HTTP API of the real robot).")
    p.add_argument("--port", type=number(int, "TCP port; 0: one the OS picks", least=0, most=65535), default=8080,
                   help="TCP port, 0..65535 (0: one the OS picks, printed once listening; default 8080)")
    p.add_argument("--host", default="127.0.0.1", help="address of this machine to listen on (default 127.0.0.1)")
    p.add_argument("--seed", type=number(int, "seed of start poses and battery noise", least=0), default=0,
                   help="start pose and battery randomness, >= 0 (default 0)")
    p.add_argument("--speedup", type=number(float, "sim seconds per wall second; 0: as fast as possible", least=0),
                   default=1.0, help="sim seconds per wall second, >= 0; 0: as fast as possible (default 1)")
    p.add_argument("--parent", type=number(int, "process id", least=1), default=None,
                   help="exit when the process with this id ends, however it ends (the env that starts a simulator "
                        "passes its own: a run killed outright leaves no simulator behind)")
    return p


def exit_with(parent: int, every: float = 0.5) -> None:
    """End this process (status 0) once ``parent`` is no longer its parent (it died, even by SIGKILL, and this
    one was handed to another), checked every ``every`` s from a daemon thread."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def listen(host: str, port: int, app: Flask) -> BaseWSGIServer:
    """The threaded werkzeug server of ``app`` on ``host:port``. The socket is bound here, not by werkzeug (which
    prints its own lines and exits 1 when it cannot bind): a UserError naming ``--port`` or ``--host`` instead."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise UserError(f"--host {host}: not an address this machine can listen on ({exc.strerror or exc}); give one "
                        "of its addresses, e.g. 127.0.0.1, or 0.0.0.0 for all.") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as werkzeug does: a restart reuses the port
        sock.bind(address)
        sock.listen(LISTEN_QUEUE)
    except OSError as exc:
        sock.close()
        cause = exc.strerror or str(exc)
        if exc.errno == errno.EADDRINUSE:
            raise UserError(f"--port {port} is in use on {host} ({cause}): give a free port, or --port 0 for one "
                            "the OS picks.") from None
        raise UserError(f"--host {host} --port {port}: cannot listen there ({cause}); give an address of this "
                        "machine (e.g. 127.0.0.1, or 0.0.0.0 for all) and a free port (0: one the OS picks).") from None
    try:
        return make_server(host, port, app, threaded=True, request_handler=_QuietHandler, fd=sock.fileno())
    finally:
        sock.close()  # the server holds its own duplicate of the socket


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM or Ctrl-C (status 0); bad options or an address it cannot bind: one ``error:`` line, 2."""
    args = parser().parse_args(argv)
    if args.parent is not None:
        exit_with(args.parent)
    server = listen(args.host, args.port, create_app(Simulator(args.seed, args.speedup)))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # SystemExit ends serve_forever in the main thread
    print(f"PenguinPi simulator on http://{args.host}:{server.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
