"""Benchmark runner: PPO or MirrorPPO on Cassie through the curriculum of stages in docs/benchmarks_cassie.md.

Each stage is one ``experiment/train.py`` run in ``<out>/<algorithm>_<stage>`` that starts from the last checkpoint
of the stage it builds on (``restore_policy``). Ctrl-C or a SIGTERM to this script stops the running stage after a
checkpoint (exit status 130). Run the same command again after a stop or a lost session: a finished stage (``.done``
in its directory) is skipped, a stopped one goes on with ``trainer.resume``, the rest start in order. ``--set`` adds
overrides to every stage's run (``--set env.n_envs=2 env.vec_env=subproc``; with a stopped stage, they apply to its
resumed run). ``--start-from best`` starts a fresh stage from the best checkpoint of the stage it builds on (its
best evaluation by the run's metric, success rate here) instead of the last. ``--dry-run`` prints the commands
without running them.

    python benchmarks/cassie_curriculum.py --out runs/bench/cassie                  # stand, track, walk, cmd
    python benchmarks/cassie_curriculum.py --out runs/bench/cassie --stages wide    # another stage 4 from walk

Stages (an epoch is 13 rollouts of 4 copies x 1024 steps, 53,248 env steps, the first past 50k; ~750 env steps/s on
one core of a fast machine: 3 h for stand to cmd, ~8.5 h at the 260 of a slow one):

    stand  the tent reward (progress, overspeed), alive, foot terms; commands 0-1 m/s           1.06M  from scratch
    track  narrow speed tracking (speed_sigma 0.05), foot terms; commands 0.2-0.4             2.13M  from stand
    walk   track's reward plus the tent at weight 1 and foot_height; commands 0.2-0.8          1.60M  from track
    wide   walk's reward with a wider tracking bell (speed_sigma 0.25)                          3.19M  from walk
    cmd    wide's reward, and in training a new command every 2-5 s (CommandChanges)            3.19M  from walk
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from hydrarl.config.runs import MODEL
from hydrarl.errors import UserError, exit_on_user_error
from hydrarl.paths import PROJECT_ROOT
from hydrarl.training.checkpoint import BEST, LAST, checkpoint_candidates
from hydrarl.training.jobs import train_command

ALGORITHMS = ("mirror_ppo", "ppo_cassie")
W = "env.kwargs.reward.weights."
COMMON = ("env=Cassie", "env.n_envs=4", "algorithm.n_steps=1024", "algorithm.batch_size=256", "algorithm.gamma=0.995",
          "trainer.eval_after_n_steps=50000")
TENT = (f"{W}speed=0", f"{W}progress=2.0", f"{W}overspeed=2.0", f"{W}alive=1.0", f"{W}foot_force=1.0",
        f"{W}foot_speed=1.0")
TRACK = (f"{W}speed=2.0", f"{W}foot_force=1.0", f"{W}foot_speed=1.0")
WALK = (*TRACK, f"{W}progress=1.0", f"{W}overspeed=1.0", f"{W}foot_height=1.0",
        "env.kwargs.speeds=[0.2,0.3,0.4,0.5,0.6,0.7,0.8]", "trainer.n_test_rollouts=20")
COMMAND_CHANGES = "env.wrappers=[{_target_: hydrarl.envs.cassie.commands.CommandChanges, hold: [2.0, 5.0], only: train}]"


@dataclass(frozen=True)
class Stage:
    after: str | None  # the stage whose last checkpoint this one starts from
    overrides: tuple[str, ...]


STAGES = {
    "stand": Stage(None, (*TENT, "seed=14", "algorithm.policy_kwargs.log_std_init=-1.6", "trainer.n_epochs=20",
                          "trainer.n_test_rollouts=5")),
    "track": Stage("stand", (*TRACK, "env.kwargs.reward.speed_sigma=0.05", "env.kwargs.speeds=[0.2,0.3,0.4]", "seed=16",
                             "trainer.n_epochs=40", "trainer.n_test_rollouts=5")),
    "walk": Stage("track", (*WALK, "env.kwargs.reward.speed_sigma=0.05", "seed=20", "trainer.n_epochs=30")),
    "wide": Stage("walk", (*WALK, "env.kwargs.reward.speed_sigma=0.25", "seed=21", "trainer.n_epochs=60")),
    "cmd": Stage("walk", (*WALK, "env.kwargs.reward.speed_sigma=0.25", COMMAND_CHANGES, "seed=21", "trainer.n_epochs=60")),
}
DEFAULT_STAGES = ("stand", "track", "walk", "cmd")
START_FROM = (LAST, BEST)  # the checkpoints a stage can start from: rewritten every epoch, or the best evaluation's


def stage_dir(out: Path, algorithm: str, stage: str) -> Path:
    return out / f"{algorithm}_{stage}"


def stage_overrides(out: Path, algorithm: str, stage: str, start_from: str = LAST) -> list[str]:
    """The overrides of a fresh run of ``stage`` (without ``hydra.run.dir``), restored from the ``start_from``
    checkpoint of the stage it builds on."""
    spec = STAGES[stage]
    restore = [] if spec.after is None else [f"restore_policy={stage_model(out, algorithm, spec.after, start_from)}"]
    return [*COMMON, f"algorithm={algorithm}", *spec.overrides, *restore]


def stage_model(out: Path, algorithm: str, stage: str, checkpoint: str) -> Path:
    """The model of ``stage``'s ``checkpoint`` (one of START_FROM)."""
    return stage_dir(out, algorithm, stage) / "checkpoints" / checkpoint / MODEL


def resumable(run_dir: Path) -> bool:
    """Whether ``trainer.resume=run_dir`` has a checkpoint to go on from (any the resume itself would take)."""
    try:
        return bool(checkpoint_candidates(run_dir))
    except UserError:
        return False


def next_command(out: Path, algorithm: str, stage: str, check: bool = True, start_from: str = LAST) -> list[str] | None:
    """The ``train.py`` arguments that go on with ``stage``: None when it is done, ``trainer.resume`` when it was
    stopped, a fresh run from the ``start_from`` checkpoint of the stage it builds on otherwise (with ``check``, a
    UserError when that checkpoint does not exist)."""
    run_dir = stage_dir(out, algorithm, stage)
    if (run_dir / ".done").exists():
        return None
    if resumable(run_dir):
        return [f"trainer.resume={run_dir}"]
    after = STAGES[stage].after
    if check and after is not None and not (start := stage_model(out, algorithm, after, start_from)).is_file():
        raise UserError(f"stage {stage} starts from stage {after}'s {start_from} checkpoint, and {start} does not "
                        f"exist: run stage {after} first (--stages {after} {stage}).")
    return [*stage_overrides(out, algorithm, stage, start_from), f"hydra.run.dir={run_dir}"]


def run_stage(line: list[str]) -> int:
    """Run one stage's ``train.py`` and return its exit status (130 when a signal stopped it after a checkpoint).

    A SIGTERM to this script is passed on to the training, which stops the way a Ctrl-C stops it. A Ctrl-C in the
    terminal reaches the training directly (one process group), so this script lets it finish its checkpoint
    instead of ending first: ``subprocess.call`` would kill it 0.25 s after a Ctrl-C.
    """
    child = subprocess.Popen(line, cwd=PROJECT_ROOT)

    def forward_sigterm(signum: int, frame: object) -> None:
        child.send_signal(signal.SIGTERM)

    # Ignored here only after the child started, so the training still gets a Ctrl-C.
    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, forward_sigterm),
                signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN)}
    try:
        return child.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="the directory of the stages' run directories")
    p.add_argument("--algorithm", default="mirror_ppo", help=f"one of {', '.join(ALGORITHMS)} (default mirror_ppo)")
    p.add_argument("--stages", nargs="+", default=list(DEFAULT_STAGES), metavar="STAGE",
                   help=f"in order, from {', '.join(STAGES)} (default: {' '.join(DEFAULT_STAGES)})")
    p.add_argument("--set", nargs="+", default=[], metavar="OVERRIDE",
                   help="more overrides for every stage's run, after the stage's own (the last value of a key wins)")
    p.add_argument("--start-from", choices=START_FROM, default=LAST,
                   help="the checkpoint of the previous stage a fresh stage starts from (default last)")
    p.add_argument("--dry-run", action="store_true", help="print each stage's command instead of running it")
    args = p.parse_args(argv)
    if args.algorithm not in ALGORITHMS:
        raise UserError(f"--algorithm {args.algorithm} is not allowed: one of {', '.join(ALGORITHMS)}.")
    if unknown := [s for s in args.stages if s not in STAGES]:
        raise UserError(f"--stages {' '.join(unknown)}: unknown; the stages are {', '.join(STAGES)}.")
    out = args.out.resolve()
    for n, stage in enumerate(args.stages, start=1):
        command = next_command(out, args.algorithm, stage, check=not args.dry_run, start_from=args.start_from)
        if command is None:
            print(f"stage {n}/{len(args.stages)} {stage}: done ({stage_dir(out, args.algorithm, stage)}/.done)")
            continue
        line = train_command([*command, *args.set])
        print(f"stage {n}/{len(args.stages)} {stage}: {subprocess.list2cmdline(line)}", flush=True)
        if args.dry_run:
            continue
        code = run_stage(line)
        if code != 0:
            print(f"stage {stage} ended with exit status {code}; run the same command again to go on.")
            return code
        (stage_dir(out, args.algorithm, stage) / ".done").touch()
    return 0


if __name__ == "__main__":
    sys.exit(main())
