"""MP4 videos of evaluation episodes (``render=record``), rendered off-screen.

MuJoCo renders through EGL (or OSMesa) and pygame through its dummy video driver when there is no
display; ``hydrarl`` sets ``MUJOCO_GL=egl`` and ``SDL_VIDEODRIVER=dummy`` on such machines unless
the user chose otherwise. Encoding uses the ffmpeg binary that ``imageio-ffmpeg`` ships.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import DictConfig
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv, sync_envs_normalization

from hydrarl.envs.factory import make_vec_env
from hydrarl.errors import MissingDependency

DEFAULT_FPS = 30


def write_mp4(frames: list[np.ndarray], path: Path, fps: int) -> Path:
    """Encode RGB frames (each ``(height, width, 3)`` uint8) as H.264 MP4 at ``fps`` frames/s."""
    try:
        import imageio.v2 as imageio
        import imageio_ffmpeg  # noqa: F401  (the ffmpeg binary imageio needs for MP4)
    except ImportError as exc:
        raise MissingDependency("render=record", exc.name or "imageio_ffmpeg") from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    # H.264 with yuv420p needs even sizes; macro_block_size=2 pads odd ones instead of rescaling.
    imageio.mimwrite(path, frames, fps=fps, macro_block_size=2)
    return path


def record_video(model: BaseAlgorithm, env_cfg: DictConfig, path: Path, n_episodes: int, seed: int,
                 normalization_from: VecEnv | None = None, deterministic: bool = True) -> Path:
    """Play ``n_episodes`` episodes of ``model`` in a fresh ``rgb_array`` copy of the env (seeded with
    ``seed``, observation statistics copied from ``normalization_from``) and write them to ``path``.

    The frame rate is the env's ``render_fps`` (else 30). Returns ``path``.
    """
    env = make_vec_env(env_cfg, seed, n_envs=1, training=False, render_mode="rgb_array")
    try:
        if normalization_from is not None:
            sync_envs_normalization(normalization_from, env)
        fps = int((env.get_attr("metadata")[0] or {}).get("render_fps") or DEFAULT_FPS)
        obs = env.reset()
        frames = [env.get_images()[0]]
        states, starts, done_episodes = None, np.ones(1, dtype=bool), 0
        while done_episodes < n_episodes:
            actions, states = model.predict(obs, state=states, episode_start=starts, deterministic=deterministic)
            obs, _, starts, _ = env.step(actions)
            done_episodes += int(starts[0])
            if done_episodes < n_episodes:  # after the last episode the env has already reset
                frames.append(env.get_images()[0])
        return write_mp4(frames, Path(path), fps)
    finally:
        env.close()
