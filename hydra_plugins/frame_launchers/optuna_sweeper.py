"""`hydra/sweeper=frame_optuna`: hydra-optuna-sweeper's search, resumable, with its direction checked.

Hydra's Optuna sweeper keeps its study in memory unless `storage` is set and runs `n_trials` more
trials on every command, so a search stopped by Ctrl-C or a SLURM time limit starts over. Here the
study lives in the sweep directory (`optuna.db`, SQLite) unless `storage` says otherwise, named
after that directory unless `study_name` is set, and `n_trials` counts the study's trials in all.
A trial that was running when the search stopped is asked again with the same values: frame's
launchers find its member by those overrides and resume it from its checkpoints. The sampler is
reseeded on a resume: with its fixed seed it would otherwise propose the first trials again.
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper
from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf
from omegaconf import DictConfig, OmegaConf

from frame.core.errors import FrameError

log = logging.getLogger("frame")
STUDY_FILE = "optuna.db"


@dataclass
class FrameOptunaSweeperConf(OptunaSweeperConf):
    _target_: str = "hydra_plugins.frame_launchers.optuna_sweeper.FrameOptunaSweeper"
    storage: Optional[Any] = None  # null: sqlite:///<hydra.sweep.dir>/optuna.db
    study_name: Optional[str] = None  # null: the sweep directory's name
    # {} not null: `+hydra.sweeper.params.optimizer.lr='interval(1e-4,1e-1)'` from the shell adds to it
    # (onto null OmegaConf fails with an assertion); that nests {optimizer: {lr: ...}}, flattened below
    params: Dict[str, Any] = field(default_factory=dict)


class FrameOptunaSweeper(Sweeper):
    """Wraps hydra-optuna-sweeper's sweeper (the module's class as it is now: Hydra's plugin scan
    re-executes plugin modules, see `sweeper.FrameSweeper`)."""

    def __init__(self, **params: Any) -> None:
        from hydra_plugins.hydra_optuna_sweeper import optuna_sweeper

        params["params"] = OmegaConf.create(dotted(params.get("params") or {}))
        self.optuna = optuna_sweeper.OptunaSweeper(**params)
        self.impl = self.optuna.sweeper

    def setup(self, *, hydra_context: Any, task_function: Any, config: DictConfig) -> None:
        check_direction(self.impl.direction, OmegaConf.select(config, "trainer.monitor_mode"),
                        OmegaConf.select(config, "trainer.monitor"))
        self.sweep_dir = Path(str(config.hydra.sweep.dir))
        self.impl.study_name = self.impl.study_name or self.sweep_dir.name
        if self.impl.storage is None:
            self.impl.storage = f"sqlite:///{(self.sweep_dir / STUDY_FILE).absolute()}"
        self.optuna.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        self.sweep_dir.mkdir(parents=True, exist_ok=True)  # SQLite makes the file, not its directory
        self._resume_study()
        return self.optuna.sweep(arguments)

    def _resume_study(self) -> None:
        """Run n_trials less the study's finished trials; trials left running by a stop are asked again."""
        import optuna

        try:
            study = optuna.load_study(study_name=self.impl.study_name, storage=self.impl.storage)
        except KeyError:  # no such study yet: a new search
            return
        State, trials = optuna.trial.TrialState, study.trials
        # a stopped trial is told FAIL and asked again: the later twin with its values is the one that counts
        finished = [t for t in trials if t.state.is_finished()
                    and not (t.state == State.FAIL and any(u.number > t.number and u.params == t.params for u in trials))]
        stopped = [t for t in trials if t.state in (State.RUNNING, State.WAITING)]
        for trial in stopped:
            if trial.state == State.RUNNING:
                study.tell(trial.number, state=State.FAIL)
                study.enqueue_trial(trial.params)
        log.info("Optuna study %s: %d of %d trials finished, %d stopped ones asked again", self.impl.study_name,
                 len(finished), self.impl.n_trials, len(stopped))
        if hasattr(self.impl.sampler, "reseed_rng"):  # not the grid's partial: it skips visited points itself
            self.impl.sampler.reseed_rng()  # seeded, it would propose the study's first trials again
        self.impl.n_trials = max(self.impl.n_trials - len(finished), len(stopped))
        self.impl.job_idx = len(trials)  # member numbers (sweep.json, hydra.job.num) go on from the last run's


def dotted(params, prefix: str = "") -> dict:
    """{optimizer: {lr: X}} -> {"optimizer.lr": X}: the keys the search space is written in."""
    flat = {}
    for key, value in (params.items() if isinstance(params, dict) else OmegaConf.to_container(params).items()):
        if isinstance(value, dict):
            flat.update(dotted(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_direction(direction: Any, monitor_mode: Any, monitor: Optional[str]) -> None:
    """A search that maximizes what the run minimizes (or the reverse) would chase its worst trials."""
    directions = direction if isinstance(direction, (list, tuple)) or OmegaConf.is_list(direction) else [direction]
    names = [str(getattr(d, "name", d)) for d in directions]
    if monitor_mode is None:  # not one of frame's configs: the task function's return value is the app's affair
        return
    if len(names) != 1:
        raise FrameError(f"hydra.sweeper.direction={names}: a frame member returns one value (trainer.monitor="
                         f"{monitor}); give one direction.")
    mode = str(getattr(monitor_mode, "value", monitor_mode))
    wanted = {"max": "maximize", "min": "minimize"}[mode]
    if names[0] != wanted:
        raise FrameError(f"hydra.sweeper.direction={names[0]} contradicts trainer.monitor_mode={mode} "
                         f"(trainer.monitor={monitor}): the search would chase the worst trials. "
                         f"Set hydra.sweeper.direction={wanted}, or trainer.monitor_mode to match.")


ConfigStore.instance().store(group="hydra/sweeper", name="frame_optuna", node=FrameOptunaSweeperConf,
                             provider="frame")
