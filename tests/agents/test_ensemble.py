"""The policy ensemble (src/agents/ensemble.py) with real trained Cassie runs: an ensemble of one acts as its policy
(its own normalisation applied to the raw observations), two act with the mean of their actions, it survives
save/load, and evaluate.py and plot_gait.py play it; missing or mismatched members are clear errors."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from hydrarl.agents.ensemble import PolicyEnsemble
from hydrarl.analysis.evaluate_agents import agent_from_controller, agent_from_path, evaluate_agent
from hydrarl.analysis.gait import main as plot_gait
from hydrarl.errors import Incompatible, UserError
from tests.helpers.cli import TRAIN_SCRIPT
from tests.helpers.menagerie import MENAGERIE, skip_without_cassie

TINY = ["env=Cassie", "algorithm=ppo_cassie", "algorithm.n_steps=128", "algorithm.batch_size=64", "trainer.n_epochs=1",
        "trainer.eval_after_n_steps=128", "trainer.n_test_rollouts=1", "trainer.progress_bar=false", "logger=[]"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny Cassie PPO runs (seeds 0 and 1), trained at once in two processes."""
    skip_without_cassie()
    root = tmp_path_factory.mktemp("members")
    env = {**os.environ, "MENAGERIE_ROOT": MENAGERIE}
    procs = [subprocess.Popen([sys.executable, str(TRAIN_SCRIPT), *TINY, f"seed={seed}", f"hydra.run.dir={root / str(seed)}"],
                              cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for seed in (0, 1)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
    os.environ["MENAGERIE_ROOT"] = MENAGERIE
    return [str(root / "0"), str(root / "1")]


def ensemble_of(*members: str):
    return agent_from_controller(f"Cassie/ensemble algorithm.members=[{','.join(members)}]")


def test_an_ensemble_of_one_acts_as_its_policy(runs):
    alone = evaluate_agent(agent_from_path(runs[0]), 2, seed=0)
    together = evaluate_agent(ensemble_of(runs[0]), 2, seed=0)
    assert together.episodes.returns == alone.episodes.returns and together.episodes.lengths == alone.episodes.lengths


def test_two_act_with_the_mean_of_their_actions_and_survive_save_load(runs, tmp_path):
    agent = ensemble_of(*runs)
    assert agent.env_cfg.normalize is None  # raw observations: each member normalises with its own statistics
    from hydrarl.analysis.evaluate_agents import make_eval_env

    env = make_eval_env(agent, 0)
    try:
        model = agent.make_model(env, 0)
        obs = np.stack([env.reset()[0] for _ in range(5)])
        each = [member.act(obs, deterministic=True) for member in model._loaded]
        assert not np.allclose(each[0], each[1])  # two different policies ...
        actions, _ = model.predict(obs, deterministic=True)
        assert np.allclose(actions, np.clip((each[0] + each[1]) / 2, -1, 1), atol=1e-6)  # ... averaged
        model.save(tmp_path / "ensemble.zip")
        loaded = PolicyEnsemble.load(tmp_path / "ensemble.zip", env=env)
        assert loaded.members == runs and np.allclose(loaded.predict(obs, deterministic=True)[0], actions)
    finally:
        env.close()


def test_plot_gait_plays_an_ensemble(runs, tmp_path, capsys):
    spec = f"Cassie/ensemble algorithm.members=[{runs[0]},{runs[1]}]"
    assert plot_gait(["--controller", spec, "--steps", "20", "--out", str(tmp_path / "gait")]) == 0
    assert capsys.readouterr().out.startswith(spec + ": ")
    assert (tmp_path / "gait" / "gait.png").is_file()


def test_missing_or_mismatched_members_are_clear_errors(runs, tmp_path):
    with pytest.raises(Incompatible, match=r"name them: 'algorithm.members=\[runs/a,runs/b\]'"):
        agent_from_controller("Cassie/ensemble").make_model(None, 0)
    with pytest.raises(UserError, match="is not a run directory"):
        evaluate_agent(ensemble_of(runs[0], str(tmp_path / "nowhere")), 1, seed=0)
    pendulum = tmp_path / "pendulum"
    proc = subprocess.run([sys.executable, str(TRAIN_SCRIPT), "env=Pendulum", "algorithm=ppo", "algorithm.n_steps=64",
                           "trainer.n_epochs=1", "trainer.eval_after_n_steps=64", "trainer.n_test_rollouts=1",
                           "trainer.progress_bar=false", "logger=[]", f"hydra.run.dir={pendulum}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with pytest.raises(UserError, match=r"ensemble member .*pendulum \(Pendulum/ppo seed \d+\) takes observations of shape \(3,\)"):
        evaluate_agent(ensemble_of(runs[0], str(pendulum)), 1, seed=0)
