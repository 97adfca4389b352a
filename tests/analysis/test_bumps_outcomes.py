"""benchmarks/bumps_outcomes.py on real tiny Bumps runs: every episode is counted under one start region and one
end, also for a run whose observations are normalised (env.normalize: its env is a VecNormalize)."""

from __future__ import annotations

import pytest

from benchmarks import bumps_outcomes  # (the project root is on pytest's path, as for tests.helpers)
from hydrarl.training.train import run
from tests.helpers.compose import compose_cfg, fast_overrides


@pytest.mark.parametrize("normalize", ["null", "{norm_obs: true, norm_reward: false}"])
def test_each_episode_is_counted_once_by_start_and_end(tmp_path, capsys, normalize):
    run(compose_cfg(["env=Bumps", "algorithm=rsac", *fast_overrides("rsac"), f"env.normalize={normalize}", "seed=0",
                     "trainer.n_epochs=1", "trainer.eval_after_n_steps=100", "trainer.n_test_rollouts=1", "logger=[]"]),
        tmp_path / "run")
    capsys.readouterr()
    assert bumps_outcomes.main([str(tmp_path / "run"), "--checkpoint", "last", "--episodes", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["left of bump1", "between the bumps", "right of bump2"]
    counted, ends = [], []  # "<region>: N episodes, n1 <end>, n2 <end>, ..."
    for line in lines:
        head, *parts = line.split(": ", 1)[1].split(", ")
        counted.append(int(head.removesuffix(" episodes")))
        ends.append(sum(int(part.split()[0]) for part in parts))
    assert sum(counted) == 5 and ends == counted
