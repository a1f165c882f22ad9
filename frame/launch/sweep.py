"""Sweeps that can be interrupted and run again: members, their plan, the sweep summary.

A sweep member is one Hydra job of a multirun. Its run directory is a pure function of
its swept values (`outputs/<name>-sweep/<override_dirname>/`), so running the same sweep command
again finds every member where it was:

- a member whose `run.json` says `complete` or `pruned` (and holds its `result`) is not
  started again: the launcher reports the stored result;
- every other member starts, and resumes from its checkpoints when it has some.

Each member runs through the same corridor as a single run (`frame.launch.corridor`), which records
its result in `run.json` and a failure's traceback in `error.txt`. This module is the
bookkeeping around it that frame's launchers (`hydra_plugins/frame_launchers`) share:
they skip complete members and keep `<sweep dir>/sweep.json` up to date:

    {"sweep_dir": "...", "updated": 1795477108.1, "members": [
      {"member": 0, "overrides": ["optimizer.lr=0.01"], "run_dir": "optimizer.lr=0.01",
       "status": "complete", "slurm_job_id": "41_0", "attempts": 2, "result": 0.94,
       "exit_code": 0, "skipped": false, "error": null}, ...]}

`status` is pending, running, complete, pruned (stopped early by an Optuna sweep's pruner, with a
checkpoint; not run again), failed, refused (a user error, exit 2, before it
trained: the word run.json and `frame runs` use too), interrupted or cancelled (by `scancel`
before it started: no run directory); `skipped` marks a member that was complete before
this invocation and only reported its stored result. `attempts` counts the starts run.json
records; it is null where there is no run.json (a plain Hydra app's member, one not started).

Nothing here imports torch: the launchers import this module in the submitting process.
"""

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from frame.compat.hydra import job_outcome
from frame.config.compose import member_config
from frame.config.members import DirPlanner
from frame.config.members import name as member_name
from frame.config.rundir import check_member_dir
from frame.core import run_record
from frame.core.atomic import write_file
from frame.core.errors import FrameError
from frame.core.exits import EXIT_USER_ERROR
from frame.core.state_files import DamagedFile, keep_aside, read_object, read_or_keep_aside

log = logging.getLogger("frame")

SUMMARY = "sweep.json"
FINISHED = ("complete", "pruned")  # a member in either state is reported again, not run again


@dataclass
class Member:
    """One member of the sweep, as the submitting process sees it."""

    num: int  # hydra.job.num
    overrides: list[str]
    run_dir: Path
    config: Any = field(default=None, repr=False)  # its planning config (Hydra node included), if it has an earlier run
    skipped: bool = False  # complete before this invocation: reported, not run
    job_id: str | None = None  # SLURM job id (array id _ index) once submitted
    status: str | None = None  # the launcher's verdict once the member returned
    exit_code: int | None = None
    result: Any = None
    error: str | None = None

    @property
    def record(self) -> dict:
        return run_record.read(self.run_dir)

    def returned(self, ret) -> None:
        """Take the outcome of the member's Hydra job (its JobReturn)."""
        from hydra.core.utils import JobStatus

        if ret.status == JobStatus.COMPLETED:
            status = "pruned" if self.record.get("status") == "pruned" else "complete"  # pruned: frame.training.trial
            self.status, self.exit_code, self.result = status, 0, job_outcome(ret)
            return
        error = job_outcome(ret)
        self.error = f"{type(error).__name__}: {error}"
        if isinstance(error, FrameError):  # a user error: exit 2, and `refused` where run.json says it never trained
            self.exit_code = EXIT_USER_ERROR
            self.status = run_record.status_of_attempt(self.record, "refused")
        else:
            self.status, self.exit_code = "failed", 1


def plan(launcher, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[Member]:
    """Find every member's run directory and mark the complete ones as skipped.

    Members are skipped only with `resume=true`: with resume=false the run-directory policy
    (frame.config.rundir) has already refused or moved aside an earlier sweep. Run directories
    of value-only members come from `frame.config.members.DirPlanner` (no config per member);
    a member with an earlier run, or one that is not value-only, gets its planning config from
    `frame.config.compose.member_config`: enough to name its run directory and report a stored
    result, not what it trains with (the launchers compose that when the member starts, as Hydra's do).
    """
    from hydra.core.hydra_config import HydraConfig

    hydra_config = HydraConfig.instance()
    saved = hydra_config.cfg
    planner = DirPlanner(launcher)
    members = []
    try:
        for offset, overrides in enumerate(job_overrides):
            num = initial_job_idx + offset
            dirs, config = planner.run_dir(num, overrides), None
            if dirs is None:
                config, dirs = _planning_config(launcher, num, overrides)
            run_dir, sweep_dir = dirs
            check_member_dir(run_dir, sweep_dir, overrides)
            record = run_record.read(run_dir)
            if record and config is None:  # an earlier run: its config tells whether to report it
                config = _planning_config(launcher, num, overrides)[0]
            member = Member(num, list(overrides), run_dir, config)
            if record and not same_member(run_dir, config):
                raise FrameError(
                    f"{run_dir} holds the run of another member ({' '.join(_stored_overrides(run_dir) or [])}), but "
                    f"this sweep puts member {num} ({' '.join(overrides) or 'no overrides'}) there: "
                    f"hydra.sweep.subdir={config.hydra.sweep.subdir!r} names member directories by position, not "
                    f"by overrides. Sweep in the same order as before, start over with fresh=true, or name member "
                    f"directories by their overrides (hydra.sweep.subdir=${{hydra:job.override_dirname}})."
                )
            if (
                record
                and config.get("resume", True)
                and record.get("status") in FINISHED
                and "result" in record
                and _same_overrides(run_dir, overrides)
            ):
                member.skipped, member.status, member.result, member.exit_code = (
                    True,
                    record["status"],
                    record["result"],
                    0,
                )
            members.append(member)
    finally:
        hydra_config.cfg = saved
    done = sum(m.skipped for m in members)
    if done:
        log.info(
            "%d of %d members already complete or pruned: reporting their stored results, not running them again",
            done,
            len(members),
        )
    return members


def _planning_config(launcher, num: int, overrides: Sequence[str]):
    """(config, (run dir, sweep dir)) of one member composed in full, with its job number and output dir."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf, open_dict, read_write

    config = member_config(launcher, list(overrides))
    with read_write(config.hydra), open_dict(config.hydra):  # ${hydra.job.num} in the subdir reads them
        config.hydra.job.num = num
        config.hydra.job.id = num
    HydraConfig.instance().set_config(config)  # ${hydra:job.override_dirname} in the subdir reads it
    sweep_dir = Path(str(config.hydra.sweep.dir))
    run_dir = Path(os.path.abspath(sweep_dir / str(config.hydra.sweep.subdir)))
    OmegaConf.set_readonly(config.hydra, None)  # set_config froze it; the launcher sets job.id/num
    with read_write(config.hydra), open_dict(config.hydra):
        config.hydra.runtime.output_dir = str(run_dir)
    return config, (run_dir, sweep_dir)


def same_member(run_dir: Path, config) -> bool:
    """Whether the run in `run_dir` is this member's: its overrides (`.hydra/overrides.yaml`, less the
    keys that do not name a member: override_dirname's exclude_keys, and keys this member does not
    set, such as a shared `project=.` left off this time) are the member's. A run without that file
    (hydra.output_subdir=null) is taken to be the member's, as its directory says."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    stored = _stored_overrides(run_dir)
    if stored is None:
        return True
    own = list(config.hydra.overrides.task)
    keys = {o.key_or_group for o in OverridesParser.create().parse_overrides(own)}
    stored = [o.input_line for o in OverridesParser.create().parse_overrides(stored) if o.key_or_group in keys]
    return member_name(stored, config) == member_name(own, config)


def _same_overrides(run_dir: Path, overrides: Sequence[str]) -> bool:
    """Whether the run in `run_dir` ran with exactly `overrides`: only then is its stored result this
    member's. Names leave out the keys every member shares (`trainer.epochs=5`), so the same directory
    may hold a run with other shared values; that member runs (and resumes, or says it is finished)."""
    stored = _stored_overrides(run_dir)
    return stored is None or sorted(stored) == sorted(map(str, overrides))


def _stored_overrides(run_dir: Path) -> list[str] | None:
    import yaml

    try:
        return [str(o) for o in yaml.safe_load((Path(run_dir) / ".hydra" / "overrides.yaml").read_text()) or []]
    except (OSError, ValueError, yaml.YAMLError):
        return None


def skipped_return(member: Member):
    """The JobReturn of a member that completed in an earlier invocation (its stored result)."""
    import copy

    from hydra.core.utils import JobReturn, JobStatus
    from omegaconf import OmegaConf, open_dict, read_write

    task_cfg = copy.deepcopy(member.config)
    with read_write(task_cfg), open_dict(task_cfg):
        del task_cfg["hydra"]
    chdir = member.config.hydra.job.get("chdir")
    if chdir is None:  # as Hydra's run_job decides
        from hydra import version

        chdir = not version.base_at_least("1.2")
    working_dir = str(member.run_dir) if chdir else os.getcwd()
    ret = JobReturn(
        overrides=member.overrides,
        cfg=task_cfg,
        hydra_cfg=OmegaConf.masked_copy(member.config, "hydra"),
        working_dir=working_dir,
        task_name=str(member.config.hydra.job.name),
        status=JobStatus.COMPLETED,
    )
    ret.return_value = member.result
    return ret


def failed_return(member: Member, error: BaseException):
    """The JobReturn of a member that failed; the sweeper raises `error` after all members returned."""
    from hydra.core.utils import JobReturn, JobStatus

    ret = JobReturn(overrides=member.overrides, working_dir=os.getcwd(), status=JobStatus.FAILED)
    ret.return_value = error
    return ret


class MemberFailed(RuntimeError):
    """A sweep member failed; its traceback is in its run directory's error.txt."""


def summary_entry(member: Member, sweep_dir: Path) -> dict:
    record = member.record
    attempts = len(record["attempts"]) if "attempts" in record else None  # None: not a frame run (no run.json)
    slurm_id = member.job_id or last_job_id(record)
    status = member.status or record.get("status") or "pending"
    result = member.result if member.result is not None else record.get("result")
    exit_code = member.exit_code if member.exit_code is not None else record.get("exit_code")
    return {
        "member": member.num,
        "overrides": member.overrides,
        "run_dir": relative_dir(member, sweep_dir),
        "status": status,
        "slurm_job_id": slurm_id,
        "attempts": attempts,
        "result": result,
        "exit_code": exit_code,
        "skipped": member.skipped,
        "error": member.error,
    }


def last_job_id(record: dict) -> str | None:
    """The SLURM job id (`<array>_<index>` for an array task) of the last attempt `record` (run.json) holds."""
    attempts = record.get("attempts") or []
    slurm = (attempts[-1].get("slurm") or {}) if attempts else {}
    if "array_job_id" in slurm:
        return f"{slurm['array_job_id']}_{slurm['array_task_id']}"
    return slurm.get("job_id")


def relative_dir(member: Member, sweep_dir: Path) -> str:
    """The member's run directory as the summary names it (relative to the sweep directory)."""
    try:
        return str(member.run_dir.relative_to(os.path.abspath(sweep_dir)))
    except ValueError:
        return str(member.run_dir)


def earlier_job_ids(sweep_dir: Path, members: Sequence[Member]) -> dict[int, str]:
    """member.num -> the SLURM job id an earlier invocation of this sweep recorded for it."""
    earlier = {entry["run_dir"]: entry.get("slurm_job_id") for entry in read_summary(sweep_dir)}
    ids = {m.num: earlier.get(relative_dir(m, sweep_dir)) for m in members}
    return {num: job_id for num, job_id in ids.items() if job_id}


def write_summary(sweep_dir: Path, members: Sequence[Member]) -> list[dict]:
    """Write `<sweep_dir>/sweep.json` (atomically), keeping entries of members not in `members`;
    return the entries of `members`.

    Members are keyed by run directory, so an Optuna sweep (one launch per batch of trials)
    and a re-run of the same sweep update their entries instead of repeating them.
    """
    sweep_dir = Path(sweep_dir)
    path = sweep_dir / SUMMARY
    entries = {entry["run_dir"]: entry for entry in _entries(read_or_keep_aside(path), path, keep_aside_if_bad=True)}
    current = [summary_entry(member, sweep_dir) for member in members]
    entries.update((entry["run_dir"], entry) for entry in current)
    ordered = sorted(entries.values(), key=lambda e: e["member"])
    sweep_dir.mkdir(parents=True, exist_ok=True)
    write_file(
        path,
        json.dumps(
            {"sweep_dir": os.path.abspath(sweep_dir), "updated": round(time.time(), 3), "members": ordered}, indent=2
        )
        + "\n",
    )
    return current


def read_summary(sweep_dir: Path) -> list[dict]:
    """The member entries of `<sweep_dir>/sweep.json`; [] when there is none or it is damaged (never blocks)."""
    path = Path(sweep_dir) / SUMMARY
    try:
        return _entries(read_object(path) or {}, path)
    except DamagedFile:
        return []


def _entries(summary: dict, path: Path, keep_aside_if_bad: bool = False) -> list[dict]:
    """sweep.json's members, each an object with a string run_dir; a file of another shape is damaged
    (kept beside as sweep.json.damaged-<time> before a writer replaces it)."""
    members = summary.get("members", [])
    if isinstance(members, list) and all(isinstance(m, dict) and isinstance(m.get("run_dir"), str) for m in members):
        return members
    if keep_aside_if_bad:
        log.warning(
            "%s is damaged (its members are not objects with a run_dir); kept it as %s and started a new one",
            path,
            keep_aside(path).name,
        )
        return []
    raise DamagedFile(f"{path} is damaged: its members are not objects with a run_dir.")


def format_summary(entries: Sequence[dict]) -> str:
    """The summary as a text table (what the launchers log at the end)."""
    rows = [("member", "status", "attempts", "slurm job", "result", "overrides")]
    for e in entries:
        result = e["result"] if not isinstance(e["result"], float) else f"{e['result']:.6g}"
        status = e["status"] + (" (earlier)" if e["skipped"] else "")
        attempts = "-" if e["attempts"] is None else str(e["attempts"])
        rows.append(
            (
                str(e["member"]),
                status,
                attempts,
                e["slurm_job_id"] or "-",
                "-" if result is None else str(result),
                " ".join(e["overrides"]) or "(none)",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1] for row in rows)


def log_summary(sweep_dir: Path, members: Sequence[Member]) -> None:
    entries = write_summary(sweep_dir, members)
    log.info("sweep summary (%s):\n%s", Path(sweep_dir) / SUMMARY, format_summary(entries))
