"""The PenguinPi simulator, client and env against real simulator processes over loopback HTTP (no mocks)."""

from __future__ import annotations

import math
import re
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import pytest
import requests

from hydrarl.envs.penguinpi.client import PenguinPiClient, RobotError
from hydrarl.envs.penguinpi.env import PenguinPiEnv
from hydrarl.envs.penguinpi.robot import LAG_TAU, METRES_PER_COUNT, TRACK_WIDTH, wrap16
from hydrarl.envs.penguinpi.track import track_share
from hydrarl.errors import UserError
from tests.helpers.net import free_port

LOOPBACK = requests.Session()
LOOPBACK.trust_env = False  # raw requests to the simulator, never through a proxy from the environment
ON_TRACK = (0.0, 1.0, 0.0)  # on the straight at y = 1 m, heading +x


@contextmanager
def simulator(speedup: float):
    """A sim_server process on the loopback port the OS gives ``--port 0``; yields the URL it announces;
    SIGTERM ends it with status 0."""
    process = subprocess.Popen([sys.executable, "-m", "hydrarl.envs.penguinpi.sim_server", "--port", "0",
                                "--speedup", str(speedup)], stdout=subprocess.PIPE, text=True)
    try:
        announced = re.fullmatch(r"PenguinPi simulator on (http://127\.0\.0\.1:(\d+))", process.stdout.readline().strip())
        assert announced and int(announced.group(2)) > 0
        yield announced.group(1)
    finally:
        process.terminate()
        try:
            assert process.wait(timeout=10) == 0
        finally:
            process.kill()


@pytest.fixture(scope="module")
def url():
    with simulator(0) as address:
        yield address


@pytest.fixture
def client(url):
    robot = PenguinPiClient(url)
    yield robot
    robot.close()


def expected_counts(command: int, seconds: float) -> float:
    """Counts a wheel turns from rest at ``command`` for ``seconds`` under the first-order lag."""
    return 10 * command * (seconds - LAG_TAU * (1 - math.exp(-seconds / LAG_TAU)))


def test_endpoint_formats(url):
    def get(endpoint: str, **params) -> requests.Response:
        response = LOOPBACK.get(url + endpoint, params=params, timeout=5)
        assert response.status_code == 200, response.text
        return response

    LOOPBACK.get(url + "/sim/reset", params=dict(zip("x y theta".split(), ON_TRACK, strict=True)), timeout=5)
    body = get("/robot/set/velocity", value="30,30", time="0.2").json()
    assert set(body) == {"encoder", "pose"} and set(body["pose"]) == {"x", "y", "theta"}
    assert all(isinstance(body["encoder"][wheel], int) for wheel in ("left", "right"))
    assert get("/robot/stop").json() == body
    assert re.fullmatch(r"-?\d+,-?\d+", get("/robot/get/encoder").text)
    assert get("/robot/hw/reset").text == "" and get("/robot/get/encoder").text == "0,0"
    assert [float(value) for value in get("/robot/get/pose").text.split(",")] == [body["pose"][k] for k in ("x", "y", "theta")]
    assert get("/robot/pose/reset").text == "" and get("/robot/get/pose").text == "0.0,0.0,0.0"
    image = get("/camera/get")
    assert image.headers["Content-Type"] == "image/png" and image.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert 7000 < int(get("/battery/get/voltage").text) < 8500 and 200 < int(get("/battery/get/current").text) < 2000
    assert LOOPBACK.get(url + "/no/such", timeout=5).status_code == 404


def test_straight_timed_move_counts_and_pose(client):
    client.sim_reset(*ON_TRACK)
    state = client.set_velocity(50, 50, time=1.0)
    assert state.left == pytest.approx(expected_counts(50, 1.0), abs=2) and state.left == state.right
    assert (state.x, state.y, state.theta) == pytest.approx((state.left * METRES_PER_COUNT, 0.0, 0.0))
    assert client.sim_state()["command"] == [0, 0]  # stopped at the end
    assert client.get_encoders() == (state.left, state.right)
    backwards = client.set_velocity(-30, -30, time=0.5)
    assert backwards.left - state.left == pytest.approx(expected_counts(-30, 0.5), abs=2)


def test_turning_move_follows_the_spec_formula(client):
    client.sim_reset(*ON_TRACK)
    state = client.set_velocity(40, 20, time=0.6)
    left, right = state.left * METRES_PER_COUNT, state.right * METRES_PER_COUNT
    theta = (left - right) / TRACK_WIDTH  # theta grows when the left wheel travels further
    average = (left + right) / 2
    assert state.theta == pytest.approx(theta, abs=1e-9) and theta > 0
    # the robot integrates at 5 Hz; one step of the formula over the whole move differs by the arc/chord error only
    assert (state.x, state.y) == pytest.approx((average * math.cos(theta / 2), average * math.sin(theta / 2)), abs=2e-3)
    assert client.get_pose() == pytest.approx((state.x, state.y, state.theta))


def test_accel_ramp_turns_less(client):
    client.sim_reset(*ON_TRACK)
    state = client.set_velocity(50, 50, time=1.0, accel=0.3)
    assert 0.5 * expected_counts(50, 1.0) < state.left < expected_counts(50, 1.0) - 50
    assert client.sim_state()["command"] == [0, 0]


def test_deadband(client):
    client.sim_reset(*ON_TRACK)
    assert client.set_velocity(9, -9, time=1.0).left == 0
    assert client.get_encoders() == (0, 0)
    assert client.set_velocity(10, 10, time=1.0).left > 50


def test_encoders_wrap_at_16_bits(client):
    client.sim_reset(0.0, 0.0, 0.0)
    state = client.set_velocity(100, -100, time=33.0)  # 32 900 counts spinning on the spot
    assert state.left == pytest.approx(wrap16(round(expected_counts(100, 33.0))), abs=2) and state.left < 0
    assert state.right == -state.left


def test_camera_sees_the_road_and_changes_when_moving(client):
    client.sim_reset(*ON_TRACK)
    before = client.get_image()
    assert before.shape == (240, 320, 3) and before.dtype == np.uint8
    assert track_share(before[-80:]) > 0.8
    client.set_velocity(40, 40, time=0.5)
    after = client.get_image()
    assert not np.array_equal(before, after)  # the floor tiles move
    client.sim_reset(0.0, 0.0, 0.0)  # the middle of the loop: floor only
    assert track_share(client.get_image()[-80:]) == 0.0


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("", "missing parameter 'value'"),
        ("value=10", "two comma-separated"),
        ("value=1.5,2", "integers"),
        ("value=a,b", "integers"),
        ("value=101,0", "[-100, 100]"),
        ("value=10,10&time=-1", "'time'"),
        ("value=10,10&time=abc", "'time' must be a number"),
        ("value=10,10&accel=0.1", "'accel' needs 'time'"),
        ("value=10,10&time=0.4&accel=0.2", "time > 2 * accel"),
    ],
)
def test_bad_requests_get_400_with_message(url, query, words):
    response = LOOPBACK.get(f"{url}/robot/set/velocity?{query}", timeout=5)
    assert response.status_code == 400 and words in response.json()["message"]


def test_real_time_speedup():
    with simulator(1.0) as address:
        robot = PenguinPiClient(address)
        start = time.monotonic()
        robot.set_velocity(30, 30, time=0.5)
        assert time.monotonic() - start >= 0.5
        robot.reset_encoders()
        robot.set_velocity(30, 30)  # persists: the sim follows the wall clock between requests
        time.sleep(0.3)
        assert robot.get_encoders()[0] >= round(expected_counts(30, 0.3)) - 1
        stopped = robot.stop().left
        time.sleep(0.1)
        assert robot.get_encoders()[0] == stopped
        robot.close()


def test_client_errors(url):
    port = free_port()
    down = PenguinPiClient(f"http://127.0.0.1:{port}", timeout=1.0, retries=2)
    start = time.monotonic()
    with pytest.raises(RobotError, match=rf"127\.0\.0\.1:{port} unreachable on /robot/get/encoder after 3 attempts"):
        down.get_encoders()
    assert time.monotonic() - start < 3.0  # bounded: back-offs 0.1 + 0.2 s
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        slow = PenguinPiClient(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=0.3)
        with pytest.raises(RobotError, match=r"timed out on /robot/set/velocity \(no answer within 0\.4 s\)"):
            slow.set_velocity(10, 10, time=0.1)
    robot = PenguinPiClient(url)
    with pytest.raises(RobotError, match=r"HTTP 400 on /robot/set/velocity: parameter 'value' must lie in"):
        robot.set_velocity(200, 0)
    with pytest.raises(RobotError, match="HTTP 500 on /sim/fail: simulated server failure"):
        robot._get("/sim/fail")
    robot.close()


def test_env_spaces_steps_and_rewards(url):
    env = PenguinPiEnv(robot_url=url, render_mode="rgb_array")
    assert env.is_simulator and env.observation_space.shape == (80, 320, 3) and env.action_space.shape == (2,)
    observation, info = env.reset(seed=3)
    assert observation in env.observation_space and info["track_share"] > 0.5
    for _ in range(5):
        observation, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert observation in env.observation_space and 0.0 <= reward <= 1.1 and not truncated  # track <= 0.1, pose change <= 1
    assert env.render().shape == (240, 320, 3)
    env.close()
    track_only = PenguinPiEnv(robot_url=url, reward={"pose_change": 0.0})
    track_only.reset(seed=3)
    still = track_only.step(np.zeros(2))[1]
    moving = track_only.step(np.array([0.5, 0.5]))[1]
    assert 0.09 < still <= 0.1 and moving <= 0.1  # standing on the road earns the track term's maximum
    track_only.reset(seed=3)
    env = PenguinPiEnv(robot_url=url)
    env.reset(seed=3)
    driving = env.step(np.array([0.5, 0.5]))
    assert driving[1] > env.step(np.zeros(2))[1] + 0.2  # the default rewards driving
    x0, y0 = env.client.get_pose()[:2]
    env.step(np.array([0.5, 0.5]))
    x1, y1, _ = env.client.get_pose()
    moved = math.hypot(x1 - x0, y1 - y0)
    assert env.step(np.zeros(2))[4]["episode_metrics"]["distance"] == pytest.approx(driving[4]["episode_metrics"]["distance"] + moved)
    env.close()
    track_only.close()


def test_env_teleop_and_encoder_observations(url):
    env = PenguinPiEnv(robot_url=url, actions="teleop", include_encoders=True)
    env.reset(seed=0)
    observation, _, _, _, info = env.step(8)  # fwd = 1, turn = 1
    assert info["command"] == (15, 25) and observation in env.observation_space
    assert observation["encoders"][0] == pytest.approx(expected_counts(15, 0.2), abs=2)
    assert env.step(4)[4]["command"] == (0, 0)
    env.close()


def test_env_terminates_off_the_track(url, client):
    env = PenguinPiEnv(robot_url=url)
    env.reset(seed=0)
    client.sim_reset(0.0, 0.0, 0.0)
    _, reward, terminated, _, info = env.step(np.zeros(2))
    assert terminated and info["track_share"] == 0.0 and reward == 0.0
    env.close()


def test_env_stops_the_robot_on_close_and_errors(url, client):
    env = PenguinPiEnv(robot_url=url)
    env.reset(seed=0)
    stops = client.sim_state()["stops"]
    client.set_velocity(30, 30)
    with pytest.raises(ValueError):
        env.step(np.zeros(3))  # a broken action: step raises after stopping the robot
    state = client.sim_state()
    assert state["command"] == [0, 0] and state["stops"] == stops + 1
    client.set_velocity(30, 30)
    with pytest.raises(RuntimeError), env:
        raise RuntimeError("the policy failed")
    assert client.sim_state()["command"] == [0, 0]
    env.close()  # idempotent
    assert client.sim_state()["stops"] == stops + 2


def test_owned_simulators_started_at_once_each_get_their_own():
    with ThreadPoolExecutor(3) as pool:
        first, second, third = pool.map(lambda _: PenguinPiEnv(), range(3))
    third.close()
    try:
        assert len({first.client.url, second.client.url, third.client.url}) == 3
        first.reset(seed=1)
        second.reset(seed=1)
        pose = second.client.sim_state()["true_pose"]
        for _ in range(3):
            first.step(np.array([1.0, 0.5]))
        assert second.client.sim_state()["true_pose"] == pose
        assert first.client.sim_state()["true_pose"] != pose
    finally:
        processes = [first._process, second._process]
        first.close()
        second.close()
    assert [process.returncode for process in processes] == [0, 0]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[-1][0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


def test_an_owned_simulator_dies_with_a_process_killed_outright():
    holder = subprocess.Popen([sys.executable, "-c", "from hydrarl.envs.penguinpi.env import PenguinPiEnv\n"
                               "env = PenguinPiEnv()\nprint(env._process.pid, flush=True)\nimport time\ntime.sleep(600)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        simulator = int(holder.stdout.readline())
        assert _alive(simulator)
        holder.kill()  # SIGKILL: the env's close() never runs
        holder.wait()
        deadline = time.monotonic() + 10
        while _alive(simulator) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(simulator)
    finally:
        holder.kill()
        holder.wait()


def test_an_owned_simulator_that_dies_before_listening_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(sys, "executable", "/bin/false")  # the simulator command exits 1 at once
    with pytest.raises(RobotError, match="simulator exited with status 1 before it listened"):
        PenguinPiEnv()


def test_env_config_builds_through_the_factory():
    from hydrarl.envs.factory import make_env
    from tests.helpers.compose import compose_cfg

    env = make_env(compose_cfg(["env=PenguinPi", "algorithm=ppo"]).env)
    observation, _ = env.reset(seed=0)
    assert observation.shape == (80, 320, 3)
    assert env.step(env.action_space.sample())[1] >= 0.0
    env.close()


@pytest.mark.parametrize("kwargs, needle", [({"actions": "joystick"}, "continuous | teleop"), ({"crop_rows": 0}, "1..240"),
                                            ({"render_mode": "human"}, "null | rgb_array")])
def test_bad_env_kwargs_are_user_errors(url, kwargs, needle):
    with pytest.raises(UserError, match=needle.replace("|", r"\|").replace(".", r"\.")):
        PenguinPiEnv(robot_url=url, **kwargs)


def test_client_ignores_proxies_from_the_environment(url, monkeypatch):
    """A proxy set for the user's internet traffic must not carry robot requests (a closed loopback port
    stands for it here: honouring it would make the call fail)."""
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:1")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert len(PenguinPiClient(url, retries=0).get_encoders()) == 2


@pytest.mark.parametrize("kwargs, needle", [
    ({"max_speed": 500}, "env.kwargs.max_speed=500 is not allowed: an integer in 10..100"),
    ({"max_speed": 5}, "env.kwargs.max_speed=5 is not allowed"),
    ({"step_time": -1}, "env.kwargs.step_time=-1 is not allowed: seconds of driving per action, a number in (0, 600]"),
    ({"step_time": 0}, "env.kwargs.step_time=0 is not allowed"),
    ({"robot_url": "robot"}, "env.kwargs.robot_url='robot' is not allowed: null (start a simulator) or the robot's address"),
    ({"sim_speedup": float("nan")}, "env.kwargs.sim_speedup=nan is not allowed"),
    ({"sim_seed": -1}, "env.kwargs.sim_seed=-1 is not allowed: an integer >= 0"),
    ({"timeout": 0}, "env.kwargs.timeout=0 is not allowed"),
    ({"offtrack_share": 2}, "env.kwargs.offtrack_share=2 is not allowed: a share of the image in [0, 1]"),
])
def test_env_kwargs_the_robot_would_refuse_are_user_errors_before_a_simulator_starts(kwargs, needle, monkeypatch):
    """Checked when the env is built: with a simulator command that cannot start (/bin/false), the error is still
    the one naming the key, so nothing was started and no request was sent."""
    monkeypatch.setattr(sys, "executable", "/bin/false")
    with pytest.raises(UserError) as error:
        PenguinPiEnv(**kwargs)
    assert str(error.value).startswith(needle), error.value


def test_sim_server_refuses_a_busy_port_and_an_address_not_here_in_one_line(capsys):
    from hydrarl.envs.penguinpi.sim_server import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert main(["--port", str(port)]) == 2
    assert capsys.readouterr().err == (f"error: --port {port} is in use on 127.0.0.1 (Address already in use): give a "
                                       "free port, or --port 0 for one the OS picks.\n")
    assert main(["--port", "0", "--host", "203.0.113.5"]) == 2  # TEST-NET-3: no address of this machine
    err = capsys.readouterr().err
    assert err.startswith("error: --host 203.0.113.5 --port 0: cannot listen there (Cannot assign requested address); ")
    assert err.count("\n") == 1
