"""MP4 videos of evaluation episodes (``render=record`` in training, ``evaluate.py --video``).

Frames come from a separate one-copy env made with ``render_mode="rgb_array"``, so recording never
disturbs the training or evaluation envs. MuJoCo renders through EGL (or OSMesa) and pygame through
its dummy video driver when there is no display; ``hydrarl`` sets ``MUJOCO_GL=egl`` and
``SDL_VIDEODRIVER=dummy`` on such machines unless the user chose otherwise. Encoding uses the
ffmpeg binary that ``imageio-ffmpeg`` ships.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import DictConfig
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv

from hydrarl.envs.factory import make_vec_env
from hydrarl.errors import MissingDependency
from hydrarl.training.evaluation import run_episodes

DEFAULT_FPS = 30


def make_video_env(env_cfg: DictConfig, seed: int) -> VecEnv:
    """One evaluation copy of the env that renders ``rgb_array`` frames (normalisation frozen)."""
    return make_vec_env(env_cfg, seed, n_envs=1, training=False, render_mode="rgb_array")


def write_mp4(frames: list[np.ndarray], path: Path, fps: int) -> Path:
    """Encode RGB frames (each ``(height, width, 3)`` uint8) as H.264 MP4 at ``fps`` frames/s."""
    try:
        import imageio.v2 as imageio
        import imageio_ffmpeg  # noqa: F401  (the ffmpeg binary imageio needs for MP4)
    except ImportError as exc:
        raise MissingDependency("video recording", exc.name or "imageio_ffmpeg") from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    # H.264 with yuv420p needs even sizes; macro_block_size=2 pads odd ones instead of rescaling.
    imageio.mimwrite(path, frames, fps=fps, macro_block_size=2)
    return path


def record_video(model: BaseAlgorithm, env: VecEnv, path: Path, n_episodes: int, seed: int,
                 deterministic: bool = True) -> Path:
    """Play ``n_episodes`` episodes of ``model`` in ``env`` (a :func:`make_video_env` copy, with its
    normalisation statistics already set) from ``seed`` — the same episodes an evaluation with that
    seed plays — and write them to ``path`` at the env's ``render_fps`` (else 30). An agent with ``add_markers(env)``
    draws into each frame what it aims at (HAC: its current subgoals). Returns ``path``."""
    frames: list[np.ndarray] = []
    mark = getattr(model, "add_markers", None)  # an agent that shows what it aims at (HAC's subgoals)

    def grab() -> None:
        if mark is not None:
            mark(env)
        frames.append(env.get_images()[0])

    run_episodes(model, env, n_episodes, seed, deterministic, on_frame=grab)
    fps = int((env.get_attr("metadata")[0] or {}).get("render_fps") or DEFAULT_FPS)
    return write_mp4(frames, Path(path), fps)
