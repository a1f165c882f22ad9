"""`hydra/sweeper=frame_optuna`: an Optuna (>= 4) search through ask/tell, resumable, with pruning.

The search space is written as hydra-optuna-sweeper's (and lightning-hydra-template's) `params`:
`interval(a, b)`, `tag(log, interval(a, b))`, `tag(int, interval(a, b))`, `choice(...)`,
`range(...)`, read with Hydra's public override parser; keys that are not sweeps are fixed overrides.

The study lives in the sweep directory unless `storage` says otherwise: `optuna.db` (SQLite) when the
launcher runs members in this process (`frame_sequential`, Hydra's basic launcher), else
`optuna.journal` (Optuna's journal file, with a lock that works on NFS) for members in other processes
or on other nodes (`frame_local`, `frame_slurm`); a study file an earlier command left wins. It is
named after that directory unless `study_name` is set, and `n_trials` counts the study's trials in
all, so the same command after an interruption goes on: a trial that was running is told FAIL and
asked again with the same values (its member resumes from its checkpoints); complete and pruned
trials are not run again.

Trial number = member number (`hydra.job.num`): a member finds its trial by it
(`frame.training.trial`), reports its monitor every epoch and, when `pruner` says so, stops with a
checkpoint as `pruned`; the sweeper then tells the trial PRUNED if the member has not.
"""

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from frame.compat.extras import require
from frame.compat.hydra import job_outcome
from frame.config.optuna_study import build_pruner, instantiated, open_storage, unreadable
from frame.core.errors import FrameError

log = logging.getLogger("frame")
SQLITE_FILE, JOURNAL_FILE = "optuna.db", "optuna.journal"
# launchers that run every member in the sweeper's own process: SQLite is safe there
IN_PROCESS = {
    "hydra_plugins.frame_launchers.sequential.FrameSequentialLauncher",
    "hydra._internal.core_plugins.basic_launcher.BasicLauncher",
}


@dataclass
class FrameOptunaSweeperConf:
    _target_: str = "hydra_plugins.frame_launchers.optuna_sweeper.FrameOptunaSweeper"
    _recursive_: bool = False  # sampler and pruner are built here, with errors that name their key
    sampler: Any = field(default_factory=lambda: {"_target_": "optuna.samplers.TPESampler", "seed": None})
    direction: Any = "minimize"  # must match trainer.monitor_mode in frame's configs
    storage: Optional[str] = None  # null: the launcher's default in the sweep dir; `journal:<path>` or an RDB URL
    study_name: Optional[str] = None  # null: the sweep directory's name
    n_trials: int = 20  # trials of the study in all (a resumed search runs what is left)
    n_jobs: int = 2  # trials per batch (what the launcher runs together)
    max_failure_rate: float = 0.0  # failed trials of a batch tolerated before the search stops with their error
    pruner: Any = None  # e.g. {_target_: optuna.pruners.MedianPruner, n_warmup_steps: 2}
    # {} not null: `+hydra.sweeper.params.optimizer.lr='interval(1e-4,1e-1)'` from the shell adds to it
    # (onto null OmegaConf fails with an assertion); that nests {optimizer: {lr: ...}}, flattened below
    params: Dict[str, Any] = field(default_factory=dict)


class FrameOptunaSweeper(Sweeper):
    """Asks Optuna for `n_jobs` trials at a time, launches them as members, tells their outcomes."""

    def __init__(
        self,
        sampler: Any = None,
        direction: Any = "minimize",
        storage: Optional[str] = None,
        study_name: Optional[str] = None,
        n_trials: int = 20,
        n_jobs: int = 2,
        max_failure_rate: float = 0.0,
        pruner: Any = None,
        params: Any = None,
    ) -> None:
        self.sampler_conf, self.pruner_conf = sampler, pruner
        self.direction, self.storage, self.study_name = direction, storage, study_name
        self.n_trials, self.n_jobs, self.max_failure_rate = n_trials, max(1, n_jobs), max_failure_rate
        self.params = dotted(params or {})

    def setup(self, *, hydra_context: Any, task_function: Any, config: DictConfig) -> None:
        require("optuna", "hydra/sweeper=frame_optuna")
        check_direction(
            self.direction,
            OmegaConf.select(config, "trainer.monitor_mode"),
            OmegaConf.select(config, "trainer.monitor"),
        )
        self.sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()
        self.study_name = self.study_name or self.sweep_dir.name
        self.storage = self.storage or default_storage(self.sweep_dir, str(config.hydra.launcher._target_))
        # members compose their config afresh (hydra overrides included): these tell them their study
        with read_write(config.hydra), open_dict(config.hydra):
            config.hydra.overrides.hydra.extend(
                [f"hydra.sweeper.storage={quoted(self.storage)}", f"hydra.sweeper.study_name={quoted(self.study_name)}"]
            )
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function
        )

    def sweep(self, arguments: list[str]) -> Any:
        import optuna

        space, fixed = search_space([f"{key}={value}" for key, value in self.params.items()] + list(arguments))
        sampler = self._sampler(space)
        pruner = build_pruner(self.pruner_conf)
        try:  # the whole study read once here: a damaged or busy storage stops the search before any member
            study = optuna.create_study(
                study_name=self.study_name,
                storage=open_storage(self.storage),
                sampler=sampler,
                direction=str(self.direction),
                load_if_exists=True,
                pruner=pruner,
            )
            study.get_trials(deepcopy=False)
        except (FrameError, KeyboardInterrupt):
            raise
        except Exception as error:  # sqlalchemy's DatabaseError, a journal's JSON or UTF-8 error, a lock held
            raise unreadable(self.storage, error) from None
        to_go = self._resume(study, sampler)
        log.info(
            "Optuna study %s in %s: %d trials to run, %d at a time (sampler %s, pruner %s)",
            self.study_name,
            self.storage,
            to_go,
            self.n_jobs,
            type(sampler).__name__,
            type(study.pruner).__name__,
        )
        while to_go > 0:
            trials = [study.ask(space) for _ in range(min(self.n_jobs, to_go))]
            returns = []
            for group in consecutive(trials):  # member number = trial number: one launch per unbroken run
                overrides = [[*fixed, *(f"{name}={value}" for name, value in trial.params.items())] for trial in group]
                returns += self.launcher.launch(overrides, initial_job_idx=group[0].number)
            self._tell(study, trials, returns)
            to_go -= len(trials)
        write_results(study, self.sweep_dir)

    def _sampler(self, space: dict):
        """The configured sampler (a GridSampler gets the choices of the search space as its grid)."""
        import optuna

        sampler = instantiated(self.sampler_conf, "hydra.sweeper.sampler", optuna.samplers.BaseSampler, partial_ok=True)
        if getattr(sampler, "func", None) is optuna.samplers.GridSampler:
            grid = {name: grid_values(name, dist) for name, dist in space.items()}
            sampler = sampler(grid)
            self.n_trials = min(self.n_trials, math.prod(len(values) for values in grid.values()))
        return sampler

    def _resume(self, study, sampler) -> int:
        """Trials to run: n_trials less the study's finished ones; trials left running by a stop are told
        FAIL and asked again (the later twin with their values is the one that counts)."""
        from optuna.trial import TrialState

        trials = study.get_trials(deepcopy=False)
        if not trials:
            return self.n_trials
        finished = [
            t
            for t in trials
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
            or (t.state == TrialState.FAIL and not any(u.number > t.number and u.params == t.params for u in trials))
        ]
        stopped = [t for t in trials if t.state == TrialState.RUNNING]
        for trial in stopped:
            study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
            study.enqueue_trial(trial.params)
        waiting = sum(t.state == TrialState.WAITING for t in trials)
        log.info(
            "Optuna study %s: %d of %d trials finished (%d pruned), %d stopped ones asked again",
            self.study_name,
            len(finished),
            self.n_trials,
            sum(t.state == TrialState.PRUNED for t in trials),
            len(stopped),
        )
        if hasattr(sampler, "reseed_rng"):  # seeded, it would propose the study's first trials again
            sampler.reseed_rng()
        return max(self.n_trials - len(finished), len(stopped) + waiting)

    def _tell(self, study, trials, returns) -> None:
        """Each trial's outcome: its member's value, PRUNED (run.json says so), or FAIL."""
        from hydra.core.utils import JobStatus
        from optuna.trial import TrialState

        failures = []
        for trial, ret in zip(trials, returns):
            if member_status(ret) == "pruned":
                study.tell(trial.number, state=TrialState.PRUNED, skip_if_finished=True)
            elif ret.status == JobStatus.COMPLETED and is_number(ret.return_value):
                study.tell(trial.number, float(ret.return_value), skip_if_finished=True)
            else:
                study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
                failures.append(ret)
        if failures and len(failures) / len(returns) > self.max_failure_rate:
            first = failures[0]
            if first.status == JobStatus.COMPLETED:
                raise FrameError(
                    f"a member returned {first.return_value!r}, not a number: a frame_optuna trial "
                    f"needs the task function to return the value to optimise."
                )
            raise job_outcome(first)  # the member's error (MemberFailed), as Hydra's sweepers raise it


def default_storage(sweep_dir: Path, launcher: str) -> str:
    """The study file an earlier command left in `sweep_dir`, else SQLite for members in this process and
    a journal file for members elsewhere (several processes, or nodes sharing a filesystem)."""
    journal, sqlite = f"journal:{sweep_dir / JOURNAL_FILE}", f"sqlite:///{sweep_dir / SQLITE_FILE}"
    if (sweep_dir / JOURNAL_FILE).is_file():
        return journal
    if (sweep_dir / SQLITE_FILE).is_file():
        return sqlite
    return sqlite if launcher in IN_PROCESS else journal


def search_space(arguments: list[str]) -> tuple[dict, list[str]]:
    """({name: optuna distribution}, [fixed overrides]) from overrides in Hydra's sweep syntax."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    space, fixed = {}, []
    for override in OverridesParser.create().parse_overrides(arguments):
        if override.is_sweep_override():
            space[override.get_key_element()] = distribution(override)
        else:
            fixed.append(f"{override.get_key_element()}={override.get_value_element_as_str()}")
    fixed = [f for f in fixed if f.split("=", 1)[0] not in space]
    return space, fixed


def distribution(override):
    """One swept key as an Optuna distribution: interval -> float (int with `tag(int, ...)`, log-scaled with
    `tag(log, ...)`), range -> int or float with its step (categorical when shuffled), choice -> categorical."""
    from hydra.core.override_parser.types import Transformer
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    value, key = override.value(), override.get_key_element()
    if override.is_interval_sweep():
        log_scale = "log" in value.tags
        if "int" in value.tags:
            return IntDistribution(int(value.start), int(value.end), log=log_scale)
        return FloatDistribution(value.start, value.end, log=log_scale)
    values = list(override.sweep_iterator(transformer=Transformer.encode))
    if override.is_range_sweep() and not value.shuffle and values:
        if all(isinstance(v, int) for v in values):
            return IntDistribution(values[0], values[-1], step=int(value.step))
        return FloatDistribution(values[0], values[-1], step=value.step)
    if not values:
        raise FrameError(f"hydra.sweeper.params.{key}: {override.input_line} has no values to search.")
    return CategoricalDistribution(values)


def grid_values(name: str, dist) -> list:
    """The values a GridSampler walks for one key: a categorical's choices, an int or stepped range's values."""
    choices = getattr(dist, "choices", None)
    if choices is not None:
        return list(choices)
    if getattr(dist, "step", None):
        count = int(round((dist.high - dist.low) / dist.step)) + 1
        return [dist.low + i * dist.step for i in range(count)]
    raise FrameError(
        f"hydra.sweeper.params.{name}: a grid sampler needs a finite set of values (choice(...) or "
        f"range(...)), not a continuous interval."
    )


def consecutive(trials: list) -> list[list]:
    """Trials split into runs of consecutive numbers (another process asking the same study breaks a run)."""
    groups = []
    for trial in trials:
        if groups and trial.number == groups[-1][-1].number + 1:
            groups[-1].append(trial)
        else:
            groups.append([trial])
    return groups


def member_status(ret) -> str | None:
    """The status in the member's run.json (None outside a frame run): pruned is told only there."""
    from frame.core import run_record

    output_dir = OmegaConf.select(ret.hydra_cfg, "hydra.runtime.output_dir") if ret.hydra_cfg is not None else None
    return run_record.read(Path(output_dir)).get("status") if output_dir else None


def is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def write_results(study, sweep_dir: Path) -> None:
    """optimization_results.yaml: the best trial's values (what hydra-optuna-sweeper wrote)."""
    from frame.core.atomic import write_file

    try:
        best = study.best_trial
    except ValueError:  # no complete trial (all pruned or failed)
        log.warning("Optuna study %s has no complete trial: no optimization_results.yaml", study.study_name)
        return
    results = {"name": "optuna", "best_params": dict(best.params), "best_value": best.value, "best_trial": best.number}
    write_file(sweep_dir / "optimization_results.yaml", OmegaConf.to_yaml(OmegaConf.create(results)))
    log.info("best trial %d: %s = %s with %s", best.number, "value", best.value, best.params)


def quoted(value: str) -> str:
    """A string as one override value, whatever characters it holds."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def dotted(params, prefix: str = "") -> dict:
    """{optimizer: {lr: X}} -> {"optimizer.lr": X}: the keys the search space is written in."""
    flat = {}
    items = params.items() if isinstance(params, dict) else OmegaConf.to_container(params).items()
    for key, value in items:
        if isinstance(value, dict):
            flat.update(dotted(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_direction(direction: Any, monitor_mode: Any, monitor: Optional[str]) -> None:
    """A search that maximizes what the run minimizes (or the reverse) would chase its worst trials."""
    directions = direction if isinstance(direction, (list, tuple)) or OmegaConf.is_list(direction) else [direction]
    names = [str(getattr(d, "name", d)) for d in directions]
    if len(names) != 1:
        raise FrameError(
            f"hydra.sweeper.direction={names}: a frame member returns one value"
            f"{f' (trainer.monitor={monitor})' if monitor else ''}; give one direction."
        )
    if names[0] not in ("minimize", "maximize"):
        raise FrameError(f"hydra.sweeper.direction={names[0]}: expected minimize or maximize.")
    if monitor_mode is None:  # not one of frame's configs: the task function's return value is the app's affair
        return
    mode = str(getattr(monitor_mode, "value", monitor_mode))
    wanted = {"max": "maximize", "min": "minimize"}[mode]
    if names[0] != wanted:
        raise FrameError(
            f"hydra.sweeper.direction={names[0]} contradicts trainer.monitor_mode={mode} "
            f"(trainer.monitor={monitor}): the search would chase the worst trials. "
            f"Set hydra.sweeper.direction={wanted}, or trainer.monitor_mode to match."
        )


ConfigStore.instance().store(group="hydra/sweeper", name="frame_optuna", node=FrameOptunaSweeperConf, provider="frame")
# `override /hydra/sweeper/sampler: random` and the like, as hydra-optuna-sweeper offered
for _name, _target in {
    "tpe": "TPESampler",
    "random": "RandomSampler",
    "cmaes": "CmaEsSampler",
    "nsgaii": "NSGAIISampler",
    "qmc": "QMCSampler",
    "gp": "GPSampler",
}.items():
    ConfigStore.instance().store(
        group="hydra/sweeper/sampler",
        name=_name,
        provider="frame",
        node={"_target_": f"optuna.samplers.{_target}", "seed": None},
    )
ConfigStore.instance().store(
    group="hydra/sweeper/sampler",
    name="grid",
    provider="frame",
    node={"_target_": "optuna.samplers.GridSampler", "_partial_": True},
)
