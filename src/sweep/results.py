"""What a finished search leaves in its sweep directory.

- ``optimization_results.yaml``: best trial (value, params, overrides, run dir) or the Pareto front,
  trial counts by state, the failed trials (number, reason, job.log), the epoch cap, the storage to reopen the study;
- ``best_overrides.txt``: one line to pass straight back: ``python experiment/train.py $(cat best_overrides.txt)``;
- ``best_config.yaml``: the resolved config the best trial ran with;
- ``plots/``: optimisation history, parameter importances, parallel coordinates (Pareto front
  for several objectives) as PNG.
"""

from __future__ import annotations

import logging
import shutil
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from hydrarl.config import merge_overrides
from hydrarl.sweep.runner import EPOCH_CAP_ATTR, SweepRunner
from hydrarl.sweep.trials import failed_trials

log = logging.getLogger("hydrarl.sweep")


def trial_overrides(trial: FrozenTrial, base: list[str]) -> list[str]:
    """The train.py command line that reruns ``trial``'s configuration (its first seed, its epochs)."""
    return merge_overrides(base, trial.user_attrs.get("overrides", []))


def _describe(trial: FrozenTrial, base: list[str]) -> dict[str, Any]:
    return {
        "number": trial.number,
        "values": list(trial.values),
        "params": dict(trial.params),
        "epochs_run": trial.user_attrs.get("epochs_run"),
        "stop_reason": trial.user_attrs.get("stop_reason"),
        "run_dirs": trial.user_attrs.get("run_dirs", []),
        "overrides": trial_overrides(trial, base),
    }


def _plots(study: optuna.Study, directory: Path) -> list[Path]:
    from optuna.visualization import matplotlib as ovm

    from hydrarl.analysis.output import pyplot

    plt = pyplot()

    directory.mkdir(parents=True, exist_ok=True)
    single = len(study.directions) == 1
    makers = {"history": ovm.plot_optimization_history, "importances": ovm.plot_param_importances,
              "parallel_coordinate": ovm.plot_parallel_coordinate} if single else {"pareto_front": ovm.plot_pareto_front}
    written = []
    for name, maker in makers.items():
        try:
            with warnings.catch_warnings():  # Optuna's "experimental", matplotlib's "identical ylims" (one trial): noise here
                warnings.simplefilter("ignore")
                ax = maker(study)
            figure = (ax if hasattr(ax, "savefig") else getattr(ax, "figure", None) or ax.flat[0].figure)
            figure.set_size_inches(8, 5)
            figure.tight_layout()
            figure.savefig(directory / f"{name}.png", dpi=100)
            plt.close(figure)
            written.append(directory / f"{name}.png")
        except Exception as exc:  # noqa: BLE001 - too few trials for a plot is not an error
            log.warning("plot %s skipped: %s", name, exc)
    return written


def write_results(study: optuna.Study, runner: SweepRunner, base: list[str]) -> list[Path]:
    """Write the result files of ``runner``'s search into its sweep directory; returns their paths.
    ``base``: the overrides every trial got (they lead each trial's command line)."""
    sweep_dir = runner.sweep_dir
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    summary: dict[str, Any] = {
        "study_name": study.study_name,
        "storage": runner.storage,
        "directions": [d.name.lower() for d in study.directions],
        "objectives": list(runner.s.objectives),
        "trials": dict(Counter(t.state.name for t in study.trials)),
        "epoch_cap": study.user_attrs.get(EPOCH_CAP_ATTR),
        "env_steps_total": int(sum(t.user_attrs.get("num_timesteps", 0) for t in study.trials)),
        "worker_utilization": round(runner.utilization, 4),  # of the last invocation
    }
    files = []
    if complete and len(study.directions) == 1:
        best = _describe(study.best_trial, base)
        summary.update(best_value=best["values"][0], best_params=dict(best["params"]), best_trial=best)
        (sweep_dir / "best_overrides.txt").write_text(" ".join(best["overrides"]) + "\n")
        files.append(sweep_dir / "best_overrides.txt")
        config = Path(best["run_dirs"][0]) / "config.yaml" if best["run_dirs"] else None
        if config and config.exists():
            shutil.copy(config, sweep_dir / "best_config.yaml")
            files.append(sweep_dir / "best_config.yaml")
    elif complete:
        summary["pareto_front"] = [_describe(t, base) for t in study.best_trials]
    failed = failed_trials(study)
    if failed:
        summary["failed_trials"] = [{"number": f.number, "reason": f.reason, "log": str(f.log) if f.log else None} for f in failed]
    reevaluated = {k.split("/", 1)[1]: v for k, v in study.user_attrs.items() if k.startswith("reevaluation/")}
    if reevaluated:
        summary["reevaluation"] = reevaluated
    (sweep_dir / "optimization_results.yaml").write_text(yaml.safe_dump(summary, sort_keys=False))
    files.insert(0, sweep_dir / "optimization_results.yaml")
    return files + _plots(study, sweep_dir / "plots")
