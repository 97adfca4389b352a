"""MirrorPPO (src/agents/mirror_ppo.py): with its terms off it is SB3's PPO to the last bit; the env's mirror maps as
matrices (involutions, refused when not); the mirror applied in raw units under VecNormalize; the mirror loss makes the
policy symmetric on the real Cassie; the KL line search keeps each step within the target, restoring the state from
before the step; save/load keeps the settings and training goes on."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env as sb3_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from hydrarl.agents.factory import build_agent
from hydrarl.agents.mirror_ppo import MirrorPPO, mirror_matrix
from hydrarl.config.compose import compose
from hydrarl.envs.cassie import mirror
from hydrarl.envs.factory import make_vec_env
from hydrarl.errors import Incompatible, UserError
from hydrarl.training.evaluation import evaluate

SMALL = dict(n_steps=64, batch_size=16, n_epochs=3, policy_kwargs={"net_arch": [32, 32]}, seed=3, device="cpu")


@pytest.fixture
def cassie(menagerie):
    env = make_vec_env(compose(["env=Cassie"]).env, 0)
    yield env
    env.close()


def params(model) -> list[th.Tensor]:
    return [p.detach().clone() for p in model.policy.parameters()]


@pytest.mark.parametrize("target_kl", [None, 0.001])  # 0.001: the epoch loop also stops early
def test_with_its_terms_off_it_is_ppo_exactly(target_kl):
    models = []
    for cls in (PPO, MirrorPPO):
        model = cls("MlpPolicy", sb3_vec_env("Pendulum-v1", n_envs=2, seed=0), target_kl=target_kl, **SMALL)
        model.learn(256)
        models.append(model)
    assert all(th.equal(a, b) for a, b in zip(params(models[0]), params(models[1]), strict=True))
    assert models[0]._n_updates == models[1]._n_updates > 0


def test_the_env_maps_become_involution_matrices_and_bad_maps_are_refused(cassie):
    m_s = mirror_matrix(cassie, "mirror_obs", 42)
    m_a = mirror_matrix(cassie, "mirror_action", 10)
    x = np.random.default_rng(0).normal(size=(5, 42))
    assert np.allclose(x @ m_s.T, cassie.env_method("mirror_obs", x)[0])
    index, sign = mirror.signed_permutation(mirror.ACTION_MIRROR)
    assert np.array_equal(m_a, np.eye(10)[index] * sign[:, None])

    class Shifted(gym.Wrapper):  # a map that is linear but not its own inverse, then one that is not linear
        def mirror_obs(self, obs):
            return np.roll(obs, 1, axis=-1)

    class Moved(Shifted):
        def mirror_obs(self, obs):
            return obs + 1.0

    for wrapper, needle in ((Shifted, "not its own inverse"), (Moved, "not linear")):
        env = DummyVecEnv([lambda w=wrapper: w(gym.make("Pendulum-v1"))])
        with pytest.raises(UserError, match=needle):
            mirror_matrix(env, "mirror_obs", 3)
    with pytest.raises(Incompatible, match="has no mirror_obs"):
        mirror_matrix(DummyVecEnv([lambda: gym.make("Pendulum-v1")]), "mirror_obs", 3)


def test_under_vecnormalize_the_mirror_is_taken_in_raw_units(cassie):
    env = VecNormalize(cassie, norm_obs=True, norm_reward=False)
    rng = np.random.default_rng(1)
    env.obs_rms.mean, env.obs_rms.var = rng.normal(size=42), rng.uniform(0.5, 2.0, size=42)
    model = MirrorPPO("MlpPolicy", env, mirror_coef=1.0, **SMALL)
    raw = rng.normal(size=(4, 42))
    expected = env.normalize_obs(cassie.env_method("mirror_obs", raw)[0])
    got = model._mirrored_obs(th.as_tensor(env.normalize_obs(raw), dtype=th.float32)).numpy()
    assert np.allclose(got, expected, atol=1e-4)


def test_the_mirror_loss_makes_the_policy_symmetric(cassie):
    """SB3 starts the mean action near 0 everywhere (symmetric); PPO's updates make it asymmetric, the mirror term
    keeps it symmetric. The gap is read on states of the rollouts, with the maps read for both models."""
    gaps, evaluated = {}, {}
    for coef in (0.0, 50.0):
        model = MirrorPPO("MlpPolicy", cassie, mirror_coef=coef, learning_rate=0.003, **SMALL)
        model.learn(384)
        model._read_mirrors(cassie)
        obs = th.as_tensor(model.rollout_buffer.observations.reshape(-1, 42), dtype=th.float32)
        gaps[coef] = model._mirror_losses(obs)[0].item()
        evaluated[coef] = evaluate(model, cassie, 2, seed=0)["eval/mirror_gap_rms"]
    assert gaps[50.0] < 0.2 * gaps[0.0]
    assert evaluated[50.0] < 0.5 * evaluated[0.0]  # the independent measure, on evaluation states, agrees


def test_the_evaluation_mirror_gap_is_zero_for_a_symmetric_policy(cassie):
    """The zero action is its own mirror image: a gap of exactly 0; an untrained network's is not."""
    zero = build_agent(compose(["env=Cassie", "algorithm=constant"]).algorithm, cassie, 0, "cpu", name="constant")
    assert evaluate(zero, cassie, 1, seed=0)["eval/mirror_gap_rms"] == 0.0
    assert evaluate(PPO("MlpPolicy", cassie, seed=0), cassie, 1, seed=0)["eval/mirror_gap_rms"] > 0.0


class Spy(MirrorPPO):
    """MirrorPPO that keeps what each line search returned."""

    def _line_search(self, *args, **kwargs):
        self.searches = [*getattr(self, "searches", []), super()._line_search(*args, **kwargs)]
        return self.searches[-1]


def test_the_line_search_keeps_each_accepted_step_within_the_kl_target():
    model = Spy("MlpPolicy", sb3_vec_env("Pendulum-v1", n_envs=2, seed=0), learning_rate=0.05, line_search_kl=0.005,
                **SMALL)
    model.learn(256)
    kls, halvings, accepted = map(np.array, zip(*model.searches, strict=True))
    assert len(kls) == 2 * 3 * 128 // 16  # every minibatch step of 2 updates was checked
    assert np.all(kls[accepted] <= 0.005) and halvings.max() > 0  # a 0.05 step overshoots; halving brings it in
    logged = model.logger.name_to_value  # the last update's metrics
    assert logged["train/line_search_kl"] <= 0.005 and logged["train/line_search_halvings"] > 0


def test_a_step_the_line_search_cannot_accept_is_undone_with_the_optimiser_state():
    model = Spy("MlpPolicy", sb3_vec_env("Pendulum-v1", n_envs=2, seed=0), line_search_kl=1e-12, max_halvings=2,
                **SMALL)
    model.learn(64 * 2)  # fills one rollout, then one update
    model.policy.optimizer.zero_grad()
    start, state = params(model), model.policy.optimizer.state_dict()["state"]
    assert not any(a for _, _, a in model.searches) and all(h == 2 for _, h, _ in model.searches)
    assert state == {} or all(int(s["step"]) == 0 for s in state.values())  # Adam never kept a step
    assert all(th.equal(a, b) for a, b in zip(start, params(Spy("MlpPolicy", model.env, **SMALL)), strict=True))


def test_save_load_keeps_the_settings_and_training_goes_on(cassie, tmp_path):
    cfg = compose(["env=Cassie", "algorithm=mirror_ppo", "algorithm.n_steps=64", "algorithm.batch_size=32",
                   "algorithm.n_epochs=1", "algorithm.line_search_kl=0.02"])
    model = build_agent(cfg.algorithm, cassie, 0, "cpu", name="mirror_ppo", env_name="Cassie")
    model.learn(64)
    model.save(tmp_path / "model.zip")
    loaded = MirrorPPO.load(tmp_path / "model.zip", env=cassie)
    assert (loaded.mirror_coef, loaded.line_search_kl) == (4.0, 0.02)
    assert np.array_equal(loaded.obs_mirror, model.obs_mirror)
    loaded.learn(64, reset_num_timesteps=False)
    assert loaded.num_timesteps == 128 and "train/mirror_loss" in loaded.logger.name_to_value


def test_bad_settings_are_clear_errors():
    for kwargs, needle in (({"mirror_coef": -1}, "mirror_coef=-1"), ({"line_search_kl": 0}, "line_search_kl=0"),
                           ({"max_halvings": -1}, "max_halvings=-1")):
        with pytest.raises(UserError, match=needle):
            MirrorPPO("MlpPolicy", sb3_vec_env("Pendulum-v1", n_envs=1), **kwargs)
