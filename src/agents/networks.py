"""Feature extractors for SB3 policies."""

from __future__ import annotations

import torch as th
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn


class CarRacingCNN(BaseFeaturesExtractor):
    """Our CarRacing users' convolutional network, for channel-first images (C, H, W).

    Conv(6 filters, 7×7, stride 3) → ReLU → MaxPool 2 → Conv(12, 4×4) → ReLU → MaxPool 2 →
    Flatten → Linear(features_dim) → ReLU. On a (1, 96, 96) frame: 6×30×30 → 6×15×15 → 12×12×12 →
    12×6×6 = 432 → 216. SB3's policy scales uint8 images to [0, 1] before this network. In a DQN
    policy, ``net_arch: [64]`` then adds the users' Dense 64 before the Q-values.
    """

    def __init__(self, observation_space: spaces.Box, features_dim: int = 216):
        super().__init__(observation_space, features_dim)
        if len(observation_space.shape) != 3:
            raise ValueError(f"CarRacingCNN needs (C, H, W) image observations, got shape {observation_space.shape}")
        channels = observation_space.shape[0]
        self.cnn = nn.Sequential(
            nn.Conv2d(channels, 6, kernel_size=7, stride=3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 12, kernel_size=4),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        with th.no_grad():
            n_flatten = self.cnn(th.zeros(1, *observation_space.shape)).shape[1]
        self.linear = nn.Sequential(nn.Linear(n_flatten, features_dim), nn.ReLU())

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return self.linear(self.cnn(observations))
