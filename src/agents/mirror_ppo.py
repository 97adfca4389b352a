"""MirrorPPO: SB3's PPO with a left–right symmetry loss and an optional KL line-search step (docs/mirror_ppo.md).

The update (:meth:`MirrorPPO.train`) is PPO's, step for step, plus two options:

- **mirror loss** (Yu, Turk & Liu 2018): ``mirror_coef * mean((μ(s) − M_a μ(M_s s))²)`` on the policy's mean
  action, and ``value_mirror_coef * mean((V(M_s s) − V(s))²)`` on the critic. ``M_s`` and ``M_a`` are the env's own
  maps (its ``mirror_obs`` and ``mirror_action``, linear and their own inverse), read once as matrices; under
  ``VecNormalize`` the observation map is applied in raw units (un-normalise, mirror, normalise again).
- **KL line search** (``line_search_kl``): after each minibatch step, while the exact KL(π‖π_old) between the new
  policy and the rollout policy on that minibatch exceeds the target, the parameters and the optimiser state are
  restored to what they were before the step, the step size is halved and the step is taken again from freshly
  computed gradients. A step still above the target after ``max_halvings`` halvings is undone.

With both coefficients 0 and no line search, the update is PPO's exactly (a test compares the parameters).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.distributions import kl_divergence
from stable_baselines3.common.type_aliases import RolloutBufferSamples
from stable_baselines3.common.utils import explained_variance
from stable_baselines3.common.vec_env import VecEnv
from torch.nn import functional as F

from hydrarl.errors import Incompatible, UserError


def mirror_matrix(env: VecEnv, method: str, size: int) -> np.ndarray:
    """The env's mirror map ``method`` (``mirror_obs`` or ``mirror_action``) as a matrix ``M`` (size, size), so that
    ``mirror(x) = M @ x``. Incompatible when the env has no such map; UserError when the map moves the zero vector
    (it is not linear) or is not its own inverse (mirroring twice must give back the input)."""
    if not env.has_attr(method):  # asked first: a SubprocVecEnv's worker dies on a call to a missing method
        raise Incompatible(f"MirrorPPO needs the env's left-right mirror maps (mirror_obs, mirror_action); this env "
                           f"has no {method}.")
    images = env.env_method(method, np.eye(size), indices=[0])[0]
    matrix = np.asarray(images, dtype=np.float64).T  # column j: the image of unit vector j
    if not np.allclose(env.env_method(method, np.zeros(size), indices=[0])[0], 0.0):
        raise UserError(f"the env's {method} is not linear (it moves the zero vector); MirrorPPO needs a linear map.")
    if not np.allclose(matrix @ matrix, np.eye(size)):
        raise UserError(f"the env's {method} is not its own inverse (mirroring twice changes the input).")
    return matrix


class MirrorPPO(PPO):
    """PPO with a mirror-symmetry loss and a KL line-search step.

    :param mirror_coef: weight w of the policy's mirror loss ``w * mean((μ(s) − M_a μ(M_s s))²)`` (users': 4); 0 off
    :param value_mirror_coef: weight of the critic's mirror loss ``mean((V(M_s s) − V(s))²)``; 0 off
    :param line_search_kl: KL(π‖π_old) target of the line search on each minibatch (users': 0.02); None off
    :param max_halvings: halvings of the step size before a step above the target is undone
    :param kwargs: SB3 PPO's arguments
    """

    def __init__(self, *args: Any, mirror_coef: float = 0.0, value_mirror_coef: float = 0.0,
                 line_search_kl: float | None = None, max_halvings: int = 10, **kwargs: Any) -> None:
        for key, value in (("mirror_coef", mirror_coef), ("value_mirror_coef", value_mirror_coef)):
            if not value >= 0:
                raise UserError(f"algorithm.{key}={value} is not allowed: a weight >= 0 (0 switches the term off).")
        if line_search_kl is not None and not line_search_kl > 0:
            raise UserError(f"algorithm.line_search_kl={line_search_kl} is not allowed: a KL target > 0, or null (off).")
        if not (isinstance(max_halvings, int) and max_halvings >= 0):
            raise UserError(f"algorithm.max_halvings={max_halvings} is not allowed: an integer >= 0.")
        self.mirror_coef, self.value_mirror_coef = float(mirror_coef), float(value_mirror_coef)
        self.line_search_kl, self.max_halvings = line_search_kl, max_halvings
        self.obs_mirror: np.ndarray | None = None
        self.action_mirror: np.ndarray | None = None
        super().__init__(*args, **kwargs)
        if self.mirrors and self.env is not None:
            self._read_mirrors(self.env)

    @property
    def mirrors(self) -> bool:
        return self.mirror_coef > 0 or self.value_mirror_coef > 0

    def _read_mirrors(self, env: VecEnv) -> None:
        obs_space, action_space = env.observation_space, env.action_space
        if not (isinstance(obs_space, spaces.Box) and len(obs_space.shape) == 1 and isinstance(action_space, spaces.Box)):
            raise Incompatible(f"the mirror loss needs flat Box observations and Box actions; this env has "
                               f"{obs_space} and {action_space}.")
        self.obs_mirror = mirror_matrix(env, "mirror_obs", obs_space.shape[0])
        self.action_mirror = mirror_matrix(env, "mirror_action", action_space.shape[0])

    def _mirrored_obs(self, obs: th.Tensor) -> th.Tensor:
        """``M_s`` applied to a batch of observations (n, obs_dim) as the policy sees them (normalised or not)."""
        m = th.as_tensor(self.obs_mirror, dtype=obs.dtype, device=obs.device)
        normalizer = self.get_vec_normalize_env()
        if normalizer is None or not normalizer.norm_obs:
            return obs @ m.T
        mean = th.as_tensor(normalizer.obs_rms.mean, dtype=obs.dtype, device=obs.device)
        std = th.sqrt(th.as_tensor(normalizer.obs_rms.var, dtype=obs.dtype, device=obs.device) + normalizer.epsilon)
        mirrored = ((obs * std + mean) @ m.T - mean) / std
        return th.clamp(mirrored, -normalizer.clip_obs, normalizer.clip_obs)

    def _mirror_losses(self, obs: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """(policy mirror loss, critic mirror loss) on the observations ``obs`` (n, obs_dim)."""
        mirrored = self._mirrored_obs(obs)
        mean_action = self.policy.get_distribution(obs).mode()
        mean_mirrored = self.policy.get_distribution(mirrored).mode()
        m_a = th.as_tensor(self.action_mirror, dtype=mean_action.dtype, device=mean_action.device)
        policy_loss = th.mean((mean_action - mean_mirrored @ m_a.T) ** 2)
        value_loss = th.mean((self.policy.predict_values(mirrored) - self.policy.predict_values(obs)) ** 2)
        return policy_loss, value_loss

    def _losses(self, data: RolloutBufferSamples, clip_range: float, clip_range_vf: float | None) -> dict[str, th.Tensor]:
        """PPO's loss on one minibatch, its parts, and the mirror terms when they are on."""
        actions = data.actions.long().flatten() if isinstance(self.action_space, spaces.Discrete) else data.actions
        values, log_prob, entropy = self.policy.evaluate_actions(data.observations, actions)
        values = values.flatten()
        advantages = data.advantages
        if self.normalize_advantage and len(advantages) > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        ratio = th.exp(log_prob - data.old_log_prob)
        policy_loss = -th.min(advantages * ratio, advantages * th.clamp(ratio, 1 - clip_range, 1 + clip_range)).mean()
        if clip_range_vf is None:
            values_pred = values
        else:
            values_pred = data.old_values + th.clamp(values - data.old_values, -clip_range_vf, clip_range_vf)
        value_loss = F.mse_loss(data.returns, values_pred)
        entropy_loss = -th.mean(-log_prob) if entropy is None else -th.mean(entropy)
        loss = policy_loss + self.ent_coef * entropy_loss + self.vf_coef * value_loss
        out = {"loss": loss, "policy": policy_loss, "value": value_loss, "entropy": entropy_loss,
               "clip_fraction": th.mean((th.abs(ratio - 1) > clip_range).float())}
        with th.no_grad():
            log_ratio = log_prob - data.old_log_prob
            out["approx_kl"] = th.mean((th.exp(log_ratio) - 1) - log_ratio)
        if self.mirrors:
            out["mirror"], out["value_mirror"] = self._mirror_losses(data.observations)
            out["loss"] = loss + self.mirror_coef * out["mirror"] + self.value_mirror_coef * out["value_mirror"]
        return out

    def _step(self, loss: th.Tensor) -> None:
        self.policy.optimizer.zero_grad()
        loss.backward()
        th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
        self.policy.optimizer.step()

    def _kl_to(self, old_policy: Any, obs: th.Tensor) -> float:
        """Exact KL(π‖π_old) of the current and the rollout policy's action distributions, mean over ``obs``."""
        with th.no_grad():
            return kl_divergence(self.policy.get_distribution(obs), old_policy.get_distribution(obs)).mean().item()

    def _line_search(self, old_policy: Any, data: RolloutBufferSamples, before: tuple[dict, dict], clip_range: float,
                     clip_range_vf: float | None) -> tuple[float, int, bool]:
        """After a step: halve it until KL(π‖π_old) on this minibatch is within the target, each time from the
        parameters and optimiser state of ``before`` with gradients computed again. Returns (KL of the kept
        step, halvings, accepted); an unaccepted step is undone."""
        optimizer = self.policy.optimizer
        base_lrs = [group["lr"] for group in optimizer.param_groups]
        kl, halvings = self._kl_to(old_policy, data.observations), 0
        while kl > self.line_search_kl and halvings < self.max_halvings:
            halvings += 1
            self.policy.load_state_dict(before[0])
            optimizer.load_state_dict(copy.deepcopy(before[1]))  # Adam's moments and step count from before the step
            for group, lr in zip(optimizer.param_groups, base_lrs, strict=True):
                group["lr"] = lr * 0.5**halvings
            self._step(self._losses(data, clip_range, clip_range_vf)["loss"])
            kl = self._kl_to(old_policy, data.observations)
        accepted = kl <= self.line_search_kl
        if not accepted:
            self.policy.load_state_dict(before[0])
            optimizer.load_state_dict(copy.deepcopy(before[1]))
        for group, lr in zip(optimizer.param_groups, base_lrs, strict=True):
            group["lr"] = lr
        return kl, halvings, accepted

    def train(self) -> None:
        """One PPO update over the rollout buffer: ``n_epochs`` passes of minibatches, each a clipped-surrogate step
        (plus the mirror terms; checked by the line search), the epoch loop stopped early past ``target_kl``."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        clip_range = self.clip_range(self._current_progress_remaining)
        clip_range_vf = None if self.clip_range_vf is None else self.clip_range_vf(self._current_progress_remaining)
        if self.mirrors and self.obs_mirror is None:
            self._read_mirrors(self.env)
        old_policy = copy.deepcopy(self.policy) if self.line_search_kl is not None else None
        logs: dict[str, list[float]] = {}
        continue_training = True
        for epoch in range(self.n_epochs):
            approx_kl_divs = []
            for data in self.rollout_buffer.get(self.batch_size):
                parts = self._losses(data, clip_range, clip_range_vf)
                for key in ("policy", "value", "entropy", "clip_fraction", "mirror", "value_mirror"):
                    if key in parts:
                        logs.setdefault(key, []).append(parts[key].item())
                approx_kl_divs.append(parts["approx_kl"].cpu().numpy())
                if self.target_kl is not None and approx_kl_divs[-1] > 1.5 * self.target_kl:
                    continue_training = False
                    if self.verbose >= 1:
                        print(f"Early stopping at step {epoch} due to reaching max kl: {approx_kl_divs[-1]:.2f}")
                    break
                before = None if old_policy is None else (copy.deepcopy(self.policy.state_dict()),
                                                          copy.deepcopy(self.policy.optimizer.state_dict()))
                self._step(parts["loss"])
                if before is not None:
                    kl, halvings, accepted = self._line_search(old_policy, data, before, clip_range, clip_range_vf)
                    logs.setdefault("halvings", []).append(halvings)
                    logs.setdefault("undone", []).append(float(not accepted))
                    if accepted:
                        logs.setdefault("line_search_kl", []).append(kl)
            self._n_updates += 1
            if not continue_training:
                break
        self._record(logs, approx_kl_divs, parts["loss"], clip_range, clip_range_vf)

    def _record(self, logs: dict[str, list[float]], approx_kl_divs: list, loss: th.Tensor, clip_range: float,
                clip_range_vf: float | None) -> None:
        """PPO's train/* metrics, and where on: train/mirror_loss, train/value_mirror_loss (means over minibatches),
        train/line_search_kl (mean KL(π‖π_old) of the accepted steps), train/line_search_halvings (mean per
        step), train/line_search_undone (fraction of steps undone)."""
        record = self.logger.record
        record("train/entropy_loss", np.mean(logs["entropy"]))
        record("train/policy_gradient_loss", np.mean(logs["policy"]))
        record("train/value_loss", np.mean(logs["value"]))
        record("train/approx_kl", np.mean(approx_kl_divs))
        record("train/clip_fraction", np.mean(logs["clip_fraction"]))
        record("train/loss", loss.item())
        record("train/explained_variance",
               explained_variance(self.rollout_buffer.values.flatten(), self.rollout_buffer.returns.flatten()))
        if hasattr(self.policy, "log_std"):
            record("train/std", th.exp(self.policy.log_std).mean().item())
        record("train/n_updates", self._n_updates, exclude="tensorboard")
        record("train/clip_range", clip_range)
        if clip_range_vf is not None:
            record("train/clip_range_vf", clip_range_vf)
        for key, name in (("mirror", "mirror_loss"), ("value_mirror", "value_mirror_loss"),
                          ("line_search_kl", "line_search_kl"), ("halvings", "line_search_halvings"),
                          ("undone", "line_search_undone")):
            if key in logs:
                record(f"train/{name}", np.mean(logs[key]))
