"""Sweeps on this machine: deterministic member directories, re-runs that skip complete members,
the summary file, failed members, the local parallel launcher, and Optuna."""

import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from frame.config.compose import member_config
from frame.config.members import DirPlanner, check_values, depends_on, parse
from hydra_plugins.frame_launchers.local import member_slots
from tests.conftest import run_frame, start_frame

# The classify experiment, small: a member trains in about a second.
# name=classify: the sweeps below are outputs/classify-sweep (without it, their fixed overrides name it)
SMALL = ["experiment=classify", "name=classify", "data.dataset.num_samples=128", "trainer.epochs=1", "logger=[jsonl]"]


def _summary(sweep_dir):
    return {tuple(m["overrides"][-1:]): m for m in json.loads((sweep_dir / "sweep.json").read_text())["members"]}


def test_rerun_skips_complete_members_and_reports_their_results(tmp_path):
    first = run_frame(["train", "-m", *SMALL, "project=.", "optimizer.lr=0.01,0.001"], cwd=tmp_path, check=0)
    sweep_dir = tmp_path / "outputs" / "classify-sweep"
    members = json.loads((sweep_dir / "sweep.json").read_text())["members"]
    assert [m["status"] for m in members] == ["complete", "complete"]
    # named by the swept key alone: project=., logger=[jsonl] and the other shared overrides are left out
    assert [m["run_dir"] for m in members] == ["optimizer.lr=0.01", "optimizer.lr=0.001"]
    assert all(isinstance(m["result"], float) and m["attempts"] == 1 and not m["skipped"] for m in members)
    assert "sweep summary" in first.stdout + first.stderr

    again = run_frame(["train", "-m", *SMALL, "project=.", "optimizer.lr=0.01,0.001,0.0001"], cwd=tmp_path, check=0)
    assert "2 of 3 members already complete" in again.stdout + again.stderr
    summary = _summary(sweep_dir)
    earlier = [summary[("optimizer.lr=0.01",)], summary[("optimizer.lr=0.001",)]]
    assert all(m["skipped"] and m["attempts"] == 1 and m["status"] == "complete" for m in earlier)
    assert [m["result"] for m in earlier] == [m["result"] for m in members]
    new = summary[("optimizer.lr=0.0001",)]
    assert new["status"] == "complete" and not new["skipped"] and new["attempts"] == 1

    # another shared value names the same directory, but the stored result is not this member's: it trains on
    longer = run_frame(["train", "-m", *SMALL, "trainer.epochs=2", "optimizer.lr=0.01,0.001"], cwd=tmp_path, check=0)
    assert "already complete" not in longer.stdout + longer.stderr
    member = _summary(sweep_dir)[("optimizer.lr=0.01",)]
    assert member["run_dir"] == "optimizer.lr=0.01" and not member["skipped"] and member["attempts"] == 2
    epochs = {json.loads(line).get("epoch") for line in (sweep_dir / member["run_dir"] / "metrics.jsonl").open()}
    assert 2 in epochs


def test_a_sweep_and_a_single_run_of_the_same_name_keep_apart(tmp_path):
    run_frame(["train", *SMALL, "name=classify"], cwd=tmp_path, check=0)
    run_frame(["train", "-m", *SMALL, "optimizer.lr=0.01,0.001"], cwd=tmp_path, check=0)
    single = json.loads(run_frame(["runs", "outputs/classify", "--json"], cwd=tmp_path, check=0).stdout)
    swept = json.loads(run_frame(["runs", "outputs/classify-sweep", "--json"], cwd=tmp_path, check=0).stdout)
    assert [(r["run"], r["sweep_member"]) for r in single] == [("classify", False)]  # what `frame plot` of it draws
    assert sorted((r["run"], r["sweep_member"]) for r in swept) == [
        ("optimizer.lr=0.001", True),
        ("optimizer.lr=0.01", True),
    ]
    clash = run_frame(["train", *SMALL, "name=classify-sweep"], cwd=tmp_path, check=2)
    assert "holds a sweep" in clash.stderr and "Traceback" not in clash.stderr
    assert (tmp_path / "outputs" / "classify-sweep" / "sweep.json").is_file()


def test_a_failed_member_fails_the_sweep_and_leaves_error_txt(tmp_path):
    # a value no frame rule covers, which torch refuses when the member builds its optimizer: a crash
    result = run_frame(["train", "-m", *SMALL, "optimizer=adamw", "optimizer.weight_decay=0.01,-1.0"], cwd=tmp_path)
    assert result.returncode != 0
    sweep_dir = tmp_path / "outputs" / "classify-sweep"
    summary = _summary(sweep_dir)
    good, bad = summary[("optimizer.weight_decay=0.01",)], summary[("optimizer.weight_decay=-1.0",)]
    assert good["status"] == "complete" and bad["status"] == "failed" and bad["exit_code"] == 1
    error = (sweep_dir / bad["run_dir"] / "error.txt").read_text()
    assert "Invalid weight_decay value" in error and "Traceback" in error
    assert not (sweep_dir / good["run_dir"] / "error.txt").exists()


def test_a_bad_member_value_stops_the_sweep_before_any_member_runs(tmp_path):
    result = run_frame(["train", "-m", *SMALL, "optimizer.lr=0.01", "trainer.epochs=1,abc"], cwd=tmp_path, check=2)
    assert "trainer.epochs=abc" in result.stderr and "Integer" in result.stderr and "Traceback" not in result.stderr
    assert not [p for p in (tmp_path / "outputs" / "classify-sweep").iterdir() if p.is_dir()]  # no member started


def test_a_member_value_out_of_range_stops_the_sweep_before_any_member_runs(tmp_path):
    result = run_frame(["train", "-m", *SMALL, "optimizer.lr=0.01,-1"], cwd=tmp_path, check=2)
    assert "the sweep value optimizer.lr=-1 is invalid: expected a finite number >= 0" in result.stderr
    assert "Traceback" not in result.stderr
    assert not [p for p in (tmp_path / "outputs" / "classify-sweep").iterdir() if p.is_dir()]  # no member started


def test_resume_false_refuses_an_existing_sweep(tmp_path):
    run_frame(["train", "-m", *SMALL, "optimizer.lr=0.01"], cwd=tmp_path, check=0)
    refused = run_frame(["train", "-m", *SMALL, "optimizer.lr=0.01", "resume=false"], cwd=tmp_path)
    assert refused.returncode == 2 and "fresh=true" in refused.stderr


def test_local_launcher_runs_members_in_parallel_each_on_its_own_cores(tmp_path):
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        pytest.skip("needs 2 cores")
    run_frame(
        [
            "train",
            "-m",
            *SMALL,
            "hydra/launcher=local",
            "hydra.launcher.parallel=2",
            "hydra.launcher.cpus_per_member=1",
            "optimizer.lr=0.01,0.001",
        ],
        cwd=tmp_path,
        check=0,
    )
    sweep_dir = tmp_path / "outputs" / "classify-sweep"
    members = json.loads((sweep_dir / "sweep.json").read_text())["members"]
    assert [m["status"] for m in members] == ["complete", "complete"]
    cpus = set()
    spans = []
    for member in members:
        log = (sweep_dir / member["run_dir"] / "train.log").read_text()
        cpus.add(log.split(", cpus ")[1].split()[0].rstrip(","))
        attempt = json.loads((sweep_dir / member["run_dir"] / "run.json").read_text())["attempts"][0]
        spans.append((attempt["started"], attempt["ended"]))
    assert cpus == {str(cores[0]), str(cores[1])}  # one core each, not the same one
    (a_start, a_end), (b_start, b_end) = spans
    assert a_start < b_end and b_start < a_end  # they overlapped in time
    assert (sweep_dir / ".local" / "member-0.out").is_file()


def test_local_launcher_passes_a_stop_on_and_exits_75(tmp_path):
    """SIGTERM to the launcher reaches every running member; each checkpoints, the sweep exits 75."""
    args = [
        "train",
        "-m",
        "experiment=classify",
        "name=classify",
        "data.dataset.num_samples=20000",
        "trainer.epochs=50",
        "logger=[jsonl]",
        "hydra/launcher=local",
        "hydra.launcher.parallel=2",
        "optimizer.lr=0.01,0.001",
    ]
    process = start_frame(args, tmp_path)
    sweep_dir = tmp_path / "outputs" / "classify-sweep"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        logs = list(sweep_dir.glob("*/metrics.jsonl"))
        if len(logs) == 2 and all(path.read_text().count("val/loss") >= 1 for path in logs):
            break
        time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 75, output
    members = json.loads((sweep_dir / "sweep.json").read_text())["members"]
    assert [m["status"] for m in members] == ["interrupted", "interrupted"]
    assert all((sweep_dir / m["run_dir"] / "checkpoints" / "last.pt").is_file() for m in members)


OPTUNA = ["hparams_search=classify_optuna", "hydra.sweeper.n_jobs=2"]


def test_optuna_search_space_from_hparams_search(tmp_path):
    run_frame(["train", "-m", *SMALL, *OPTUNA, "hydra.sweeper.n_trials=2"], cwd=tmp_path, check=0)
    sweep_dir = tmp_path / "outputs" / "classify-sweep"
    members = json.loads((sweep_dir / "sweep.json").read_text())["members"]
    assert len(members) == 2 and all(m["status"] == "complete" for m in members)
    best = (sweep_dir / "optimization_results.yaml").read_text()
    assert "best_value" in best and "optimizer.lr" in best
    assert (sweep_dir / "optuna.db").is_file()  # the study, for the next command


def _trials(sweep_dir, study_name="classify"):
    """The study's trials, wherever the launcher put it (SQLite in-process, a journal file otherwise)."""
    import optuna

    from frame.config.optuna_study import open_storage

    journal = sweep_dir / "optuna.journal"
    storage = f"journal:{journal}" if journal.is_file() else f"sqlite:///{sweep_dir / 'optuna.db'}"
    return optuna.load_study(study_name=study_name, storage=open_storage(storage)).trials


def test_an_interrupted_optuna_search_goes_on_from_its_study(tmp_path):
    """SIGTERM in the first batch: the same command again asks the stopped trials again with their
    values (their members resume from their checkpoints), then new ones up to n_trials in all."""
    args = [
        "train",
        "-m",
        "experiment=classify",
        "name=classify",
        "logger=[jsonl]",
        "data.dataset.num_samples=6000",
        "trainer.epochs=4",
        *OPTUNA,
        "hydra.sweeper.n_trials=3",
        "hydra/launcher=local",
        "hydra.launcher.parallel=2",
    ]
    sweep_dir = tmp_path / "outputs" / "classify-sweep"
    process = start_frame(args, tmp_path)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list(sweep_dir.glob("*/checkpoints/last.pt"))) < 2:
        time.sleep(0.2)
    checkpointed = {path.parents[1].name for path in sweep_dir.glob("*/checkpoints/last.pt")}
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 75, output
    stopped = {tuple(sorted(t.params.items())) for t in _trials(sweep_dir) if t.state.name == "RUNNING"}
    members = json.loads((sweep_dir / "sweep.json").read_text())["members"]
    interrupted = {m["run_dir"] for m in members if m["status"] == "interrupted"} & checkpointed
    assert stopped and interrupted, output  # at least one member was stopped in training

    again = run_frame(args, cwd=tmp_path, check=0)
    assert f"{len(stopped)} stopped ones asked again" in again.stdout + again.stderr
    complete = [t for t in _trials(sweep_dir) if t.state.name == "COMPLETE"]
    assert len(complete) == 3  # n_trials counts the whole study, not this command's trials
    assert {tuple(sorted(t.params.items())) for t in complete} >= stopped
    members = json.loads((sweep_dir / "sweep.json").read_text())["members"]
    assert len(members) == 3 and all(m["status"] == "complete" for m in members)  # no trial proposed twice
    # a member stopped after its first checkpoint resumed from it (under load the other may not have started)
    assert all(m["attempts"] == 2 for m in members if m["run_dir"] in interrupted)


def test_a_search_direction_against_the_monitor_mode_exits_2(tmp_path):
    result = run_frame(["train", "-m", *SMALL, *OPTUNA, "hydra.sweeper.direction=minimize"], cwd=tmp_path, check=2)
    assert "contradicts trainer.monitor_mode=max" in result.stderr and "Traceback" not in result.stderr
    assert not list((tmp_path / "outputs").glob("*/*/run.json"))  # no trial ran


def test_member_slots_split_cpus_and_gpus():
    def slots(*args):
        return [(slot.cpus, slot.gpus) for slot in member_slots(*args)]

    cpus = list(range(8))
    assert slots(None, None, 1, cpus, []) == [((0, 1, 2, 3), ()), ((4, 5, 6, 7), ())]  # 4 cores a member
    assert slots(4, None, 1, cpus, []) == [((0, 1), ()), ((2, 3), ()), ((4, 5), ()), ((6, 7), ())]
    gpus = ["0", "1", "2", "3"]
    assert [g for _, g in slots(None, None, 1, cpus, gpus)] == [("0",), ("1",), ("2",), ("3",)]
    assert slots(None, None, 2, cpus, gpus) == [((0, 1, 2, 3), ("0", "1")), ((4, 5, 6, 7), ("2", "3"))]
    assert slots(3, 1, 0, cpus[:2], []) == [((0,), ()), ((1,), ()), ((0,), ())]  # oversubscribed
    with pytest.raises(Exception, match="need 6 GPUs"):
        member_slots(3, None, 2, cpus, gpus)


@pytest.mark.parametrize(
    "command, composed_in_full",
    [
        (["experiment=classify", "logger=[jsonl]", "optimizer.lr=0.1,0.01", "trainer.epochs=1,2"], 0),
        (["seed=1,2", "hydra.sweep.subdir=lr${optimizer.lr}_seed${seed}"], 0),
        (["model=mlp,unet3d", "trainer.epochs=1"], 2),  # a config group per member: composed in full
    ],
)
def test_a_planned_member_equals_the_member_composed_in_full(command, composed_in_full, hydra_restore_singletons):
    from types import SimpleNamespace

    from hydra import initialize_config_module
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode
    from omegaconf import OmegaConf, open_dict, read_write

    from frame.config.schema import register_configs

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="frame.conf", version_base=None):
        loader = GlobalHydra.instance().config_loader()
        master = loader.load_configuration("train", command, RunMode.MULTIRUN)
        task = list(master.hydra.overrides.task)
        members = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(task), None)[0]
        full = [loader.load_sweep_config(master, list(overrides)) for overrides in members]
        calls = []
        compose_in_full = loader.load_sweep_config
        loader.load_sweep_config = lambda *args: calls.append(args) or compose_in_full(*args)
        planned = [
            member_config(
                SimpleNamespace(config=master, hydra_context=SimpleNamespace(config_loader=loader)), list(overrides)
            )
            for overrides in members
        ]

        def run_dir(config):
            HydraConfig.instance().set_config(config)
            return f"{config.hydra.sweep.dir}/{config.hydra.sweep.subdir}"

        assert len(calls) == composed_in_full
        assert len({run_dir(config) for config in full}) == len(members) > 1
        for fast, slow in zip(planned, full):
            assert run_dir(fast) == run_dir(slow)
            assert OmegaConf.to_container(fast) == OmegaConf.to_container(slow)
        # many members at once: values checked once each, run directories named on one copy of the config
        launcher = SimpleNamespace(config=master, hydra_context=SimpleNamespace(config_loader=loader))
        assert len(check_values(launcher, members)) == composed_in_full
        planner = DirPlanner(launcher)
        for num, (overrides, slow) in enumerate(zip(members, full)):
            with read_write(slow.hydra), open_dict(slow.hydra):
                slow.hydra.job.num = slow.hydra.job.id = num
            dirs = planner.run_dir(num, overrides)
            assert dirs is None if composed_in_full else dirs[0] == Path(os.path.abspath(run_dir(slow)))
    GlobalHydra.instance().clear()


def test_a_subdir_by_job_number_works_and_a_reordered_rerun_reports_no_other_members_result(tmp_path):
    by_number = ["hydra.sweep.subdir=${hydra.job.num}", *SMALL]
    run_frame(["train", "-m", *by_number, "seed=0,1"], cwd=tmp_path, check=0)
    sweep_dir = tmp_path / "outputs" / "classify-sweep"
    members = json.loads((sweep_dir / "sweep.json").read_text())["members"]
    assert [(m["run_dir"], m["overrides"][-1], m["status"]) for m in members] == [
        ("0", "seed=0", "complete"),
        ("1", "seed=1", "complete"),
    ]

    again = run_frame(["train", "-m", *by_number, "seed=0,1"], cwd=tmp_path, check=0)  # same order: skipped
    assert "2 of 2 members already complete" in again.stdout + again.stderr
    members = json.loads((sweep_dir / "sweep.json").read_text())["members"]
    reordered = run_frame(["train", "-m", *by_number, "seed=1,0"], cwd=tmp_path, check=2)
    assert "holds the run of another member" in reordered.stderr and "seed=0" in reordered.stderr
    assert "Traceback" not in reordered.stderr
    assert json.loads((sweep_dir / "sweep.json").read_text())["members"] == members  # nothing reported or run


def test_frame_sweeper_survives_hydra_reloading_the_basic_sweeper(tmp_path):
    """Hydra's plugin scan re-executes hydra's basic_sweeper module; frame's sweeper must still build."""
    import importlib

    from hydra._internal.core_plugins import basic_sweeper

    from hydra_plugins.frame_launchers.sweeper import FrameSweeper

    importlib.reload(basic_sweeper)
    sweeper = FrameSweeper(max_batch_size=2)
    assert isinstance(sweeper.basic, basic_sweeper.BasicSweeper) and sweeper.basic.max_batch_size == 2


@pytest.mark.parametrize("launcher", ["frame_sequential", "frame_local"])
def test_a_skipped_member_returns_a_complete_job_return(tmp_path, launcher, hydra_sweep_runner):
    """Members whose run.json says complete are reported, not run: their JobReturns carry what a run's
    would (job number and id, output dir, working dir, the stored result)."""

    def task(cfg):
        raise AssertionError("a complete member ran again")

    sweep_dir = tmp_path  # the runner sets hydra.sweep.dir to its temp_dir
    for num, value in enumerate([1, 2]):
        (sweep_dir / str(num)).mkdir(parents=True)
        (sweep_dir / str(num) / "run.json").write_text(json.dumps({"status": "complete", "result": value * 10}))
    sweep = hydra_sweep_runner(
        calling_file=None,
        calling_module="hydra.test_utils.a_module",
        task_function=task,
        config_path="configs",
        config_name="compose.yaml",
        temp_dir=str(tmp_path),
        overrides=[
            f"hydra/launcher={launcher}",
            "hydra.sweep.subdir=${hydra.job.num}",
            "hydra.job.chdir=true",
            "bar=1,2",
        ],
    )
    with sweep:
        returns = sweep.returns[0]
    assert [r.return_value for r in returns] == [10, 20]
    assert [r.overrides for r in returns] == [["bar=1"], ["bar=2"]]
    assert [(r.hydra_cfg.hydra.job.num, r.hydra_cfg.hydra.job.id) for r in returns] == [(0, "0"), (1, "1")]
    assert [r.hydra_cfg.hydra.runtime.output_dir for r in returns] == [str(sweep_dir / "0"), str(sweep_dir / "1")]
    assert [r.working_dir for r in returns] == [str(sweep_dir / "0"), str(sweep_dir / "1")]  # chdir=true
    assert [r.cfg.bar for r in returns] == [1, 2]


@pytest.mark.parametrize(
    "line",
    [
        "seed=5",
        "seed=-5",
        "seed=+0",
        "a.b_c.d=1.5",
        "lr=1e-3",
        "lr=1E+3",
        "lr=.5",
        "lr=5.",
        "x=-.5e-2",
        "x=0e0",
        "x=00",
        "x=01.5",
        "x=1_000",
        "x=inf",
        "x=1e",
        "x=.",
        "x=abc",
        "a-b=1",
        "a.0=1",
        "x=[1,2]",
        "+x=1",
    ],
)
def test_override_lines_parse_as_hydra_parses_them(line):
    """frame reads `key=number` lines without Hydra's parser (1000 distinct ones in seed=range(1000))."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    hydra = OverridesParser.create().parse_override(line)
    assert parse(line) == hydra and type(parse(line)._value) is type(hydra._value)


@pytest.mark.parametrize(
    "key, depends",
    [
        ("hydra.sweep.dir", False),
        ("chained", True),
        ("nested", True),
        ("resolver", True),
        ("relative", True),
        ("by_number", True),
        ("timestamped", False),
    ],
)
def test_a_sweep_dir_is_named_once_unless_a_member_value_may_change_it(key, depends):
    from omegaconf import OmegaConf

    config = OmegaConf.create(
        {
            "name": "x",
            "seed": 1,
            "chained": "${tag}",
            "tag": "${seed}-a",
            "nested": "${oc.env:X,${seed}}",
            "resolver": "${foo:1}",
            "relative": "${.seed}",
            "by_number": "${hydra:job.num}",
            "timestamped": "${now:%H}/${name}",
            "hydra": {"sweep": {"dir": "out/${name}"}, "job": {"num": 0}},
        }
    )
    assert depends_on(config, key, {"seed", "hydra.job.num"}) is depends


def test_a_damaged_sweep_json_is_kept_beside_before_it_is_rewritten(tmp_path, caplog):
    import logging

    from frame.launch.sweep import read_summary, write_summary

    damaged = b'{"members": [{"run_dir": "lr=0.1", "slurm_job_id": "41_0"}], "upd\xffated'
    (tmp_path / "sweep.json").write_bytes(damaged)
    assert read_summary(tmp_path) == []  # read: damaged is nothing to go on, never a traceback
    with caplog.at_level(logging.WARNING, "frame"):
        assert write_summary(tmp_path, []) == []
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("sweep.json.damaged-")]
    assert len(aside) == 1 and aside[0].read_bytes() == damaged and "kept it as" in caplog.text
    assert json.loads((tmp_path / "sweep.json").read_text())["members"] == []
    (tmp_path / "sweep.json").write_text(json.dumps({"members": ["not an entry"]}))  # valid JSON, wrong shape
    write_summary(tmp_path, [])
    assert len([p for p in tmp_path.iterdir() if p.name.startswith("sweep.json.damaged-")]) == 2


@pytest.mark.parametrize("launcher", [[], ["hydra/launcher=local", "hydra.launcher.cpus_per_member=1"]])
def test_a_member_refused_by_a_user_error_is_refused_in_sweep_json_and_frame_runs(tmp_path, launcher):
    from tests.conftest import TINY

    # UNet refuses one channel when the member builds it (`frame check` cannot see it): a user error, exit 2
    result = run_frame(
        [
            "train",
            "-m",
            "name=vocab",
            *TINY,
            "trainer.epochs=1",
            "logger=[jsonl]",
            *launcher,
            "model.channels=[4,8],[4]",
        ],
        cwd=tmp_path,
    )
    assert result.returncode != 0
    members = json.loads((tmp_path / "outputs" / "vocab-sweep" / "sweep.json").read_text())["members"]
    by_dir = {member["run_dir"]: member for member in members}
    good, bad = by_dir["model.channels=[4,8]"], by_dir["model.channels=[4]"]
    assert good["status"] == "complete" and (bad["status"], bad["exit_code"]) == ("refused", 2), bad
    rows = {row["run"]: row for row in json.loads(run_frame(["runs", "--json"], cwd=tmp_path, check=0).stdout)}
    assert rows[f"vocab-sweep/{bad['run_dir']}"]["status"] == "refused"


# A project's own pruner (hydra.sweeper.pruner._target_): odd trials stop after their first epoch, so
# which members are pruned does not depend on what they learn.
ODD_TRIALS = """
import optuna


class OddTrials(optuna.pruners.BasePruner):
    def prune(self, study, trial):
        return trial.number % 2 == 1 and trial.last_step is not None
"""
PRUNED = [*OPTUNA, "hydra.sweeper.pruner={_target_: odd_trials.OddTrials}", "trainer.epochs=3"]


@contextlib.contextmanager
def importable(folder):
    """`folder` on this process's sys.path too: a command given PYTHONPATH=folder then runs in this process
    (tests.conftest.run_frame), its member processes and SLURM jobs still get the variable."""
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        sys.path.remove(str(folder))


def pruned_search(tmp_path, launcher, n_trials):
    """Run the search with the pruner importable in every process (the sweeper's, members' and SLURM jobs')."""
    (tmp_path / "odd_trials.py").write_text(ODD_TRIALS)
    with importable(tmp_path):
        return run_frame(
            ["train", "-m", *SMALL[:3], "logger=[jsonl]", *PRUNED, *launcher, f"hydra.sweeper.n_trials={n_trials}"],
            cwd=tmp_path,
            env={"PYTHONPATH": str(tmp_path)},
            check=0,
            timeout=600,
        )


def check_pruned_search(sweep_dir, n_trials):
    """Odd trials pruned after epoch 1 with a checkpoint, even ones complete, everywhere alike."""
    from frame.core import run_record

    members = {m["member"]: m for m in json.loads((sweep_dir / "sweep.json").read_text())["members"]}
    assert sorted(members) == list(range(n_trials))
    assert {n: m["status"] for n, m in members.items()} == {n: "pruned" if n % 2 else "complete" for n in members}
    states = {t.number: t.state.name for t in _trials(sweep_dir)}
    assert states == {n: "PRUNED" if n % 2 else "COMPLETE" for n in members}
    for n, member in members.items():
        run_dir = sweep_dir / member["run_dir"]
        record = run_record.read(run_dir)
        epochs = {json.loads(line).get("epoch") for line in (run_dir / "metrics.jsonl").open()} - {None}
        assert (run_dir / "checkpoints" / "last.pt").is_file() and isinstance(member["result"], float)
        if n % 2:
            assert record["status"] == "pruned" and record["exit_code"] == 0 and record["pruned"]["epoch"] == 1
            assert max(epochs) == 1  # stopped at the end of its first epoch
        else:
            assert record["status"] == "complete" and max(epochs) == 3 and "pruned" not in record
    return members


@pytest.mark.parametrize(
    "launcher", [[], ["hydra/launcher=local", "hydra.launcher.parallel=2"]], ids=["frame_sequential", "frame_local"]
)
def test_a_pruned_search_stops_members_early_and_never_reruns_them(tmp_path, launcher):
    sweep_dir = tmp_path / "outputs" / "classify-sweep"
    pruned_search(tmp_path, launcher, n_trials=4)
    # members in this process keep the study in SQLite, members elsewhere in a journal file
    assert (sweep_dir / ("optuna.journal" if launcher else "optuna.db")).is_file()
    first = check_pruned_search(sweep_dir, 4)
    runs = {
        r["run"]: r["status"]
        for r in json.loads(run_frame(["runs", str(sweep_dir), "--json"], cwd=tmp_path, check=0).stdout)
    }
    assert runs == {m["run_dir"]: m["status"] for m in first.values()}

    again = pruned_search(tmp_path, launcher, n_trials=6)
    assert "4 of 6 trials finished (2 pruned)" in again.stdout + again.stderr
    members = check_pruned_search(sweep_dir, 6)
    for n in range(4):  # neither the complete nor the pruned trials ran again
        record = json.loads((sweep_dir / members[n]["run_dir"] / "run.json").read_text())
        assert len(record["attempts"]) == 1 and members[n]["result"] == first[n]["result"]


def test_a_pruner_on_a_grid_sweep_exits_2(tmp_path):
    result = run_frame(
        ["train", "-m", *SMALL, "optimizer.lr=0.1,0.01", "hydra.sweeper.pruner={_target_: x.Y}"], cwd=tmp_path, check=2
    )
    assert "hydra.sweeper.pruner" in result.stderr and "frame_optuna" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "outputs").exists()


def test_a_pruner_that_is_not_one_exits_2(tmp_path):
    result = run_frame(
        ["train", "-m", *SMALL, *OPTUNA, "hydra.sweeper.pruner={_target_: collections.OrderedDict}"],
        cwd=tmp_path,
        check=2,
    )
    assert "hydra.sweeper.pruner._target_=collections.OrderedDict" in result.stderr and "BasePruner" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_pruned_search_stopped_by_sigterm_goes_on_without_rerunning_finished_trials(tmp_path):
    """SIGTERM while the second batch trains: the same command again resumes the stopped trials from
    their checkpoints and runs none of the complete or pruned ones again."""
    (tmp_path / "odd_trials.py").write_text(ODD_TRIALS)
    args = [
        "train",
        "-m",
        "experiment=classify",
        "name=classify",
        "logger=[jsonl]",
        "data.dataset.num_samples=6000",
        *PRUNED,
        "hydra.sweeper.n_trials=4",
        "hydra/launcher=local",
        "hydra.launcher.parallel=2",
    ]
    env = {"PYTHONPATH": str(tmp_path)}
    sweep_dir = tmp_path / "outputs" / "classify-sweep"
    process = start_frame(args, tmp_path, env=env)

    def second_batch_checkpointed():
        members = (
            json.loads((sweep_dir / "sweep.json").read_text())["members"]
            if (sweep_dir / "sweep.json").is_file()
            else []
        )
        return [
            m for m in members if m["member"] >= 2 and (sweep_dir / m["run_dir"] / "checkpoints" / "last.pt").is_file()
        ]

    deadline = time.monotonic() + 400
    while time.monotonic() < deadline and not second_batch_checkpointed():
        time.sleep(0.2)
    finished = {t.number: t.params for t in _trials(sweep_dir) if t.state.name in ("COMPLETE", "PRUNED")}
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 75 and {0, 1} <= set(finished), output

    with importable(tmp_path):
        again = run_frame(args, cwd=tmp_path, env=env, check=0, timeout=600)
    assert "stopped ones asked again" in again.stdout + again.stderr
    trials = _trials(sweep_dir)
    done = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(done) == 4 and {t.state.name for t in done} <= {"COMPLETE", "PRUNED"}
    members = {tuple(m["overrides"]): m for m in json.loads((sweep_dir / "sweep.json").read_text())["members"]}
    assert len({m["run_dir"] for m in members.values()}) == 4  # no trial proposed twice
    for member in members.values():
        record = json.loads((sweep_dir / member["run_dir"] / "run.json").read_text())
        assert member["status"] == record["status"] and record["status"] in ("complete", "pruned")
        if member["member"] in finished:  # finished before the signal: reported, not trained again
            assert len(record["attempts"]) == 1
    assert any(
        len(json.loads((sweep_dir / m["run_dir"] / "run.json").read_text())["attempts"]) == 2 for m in members.values()
    )  # a stopped member resumed from its checkpoint


LHT_SEARCH = """# @package _global_
defaults:
  - override /hydra/sweeper: frame_optuna
hydra:
  mode: "MULTIRUN"
  sweeper:
    storage: null
    study_name: null
    n_jobs: 1
    direction: maximize
    n_trials: 2
    sampler:
      _target_: optuna.samplers.TPESampler
      seed: 1234
      n_startup_trials: 10
    params:
      optimizer.lr: interval(0.0001, 0.1)
      data.batch_size: choice(32, 64, 128, 256)
      model.dropout: tag(log, interval(0.001, 0.5))
      trainer.epochs: range(1, 3)
"""


def test_a_lightning_hydra_template_search_file_runs_on_current_optuna(tmp_path):
    """lightning-hydra-template's hparams_search file, as written there (its mode: MULTIRUN, no -m),
    in the user's config dir: every params form becomes a distribution of Optuna >= 4."""
    import optuna

    (tmp_path / "conf" / "hparams_search").mkdir(parents=True)
    (tmp_path / "conf" / "hparams_search" / "lht.yaml").write_text(LHT_SEARCH)
    run_frame(
        ["train", "--config-dir", "conf", *SMALL[:3], "logger=[jsonl]", "hparams_search=lht"], cwd=tmp_path, check=0
    )
    sweep_dir = tmp_path / "outputs" / "classify-sweep"
    trials = _trials(sweep_dir, "classify-sweep")  # study_name: null names it after the sweep directory
    assert int(optuna.__version__.split(".")[0]) >= 4 and [t.state.name for t in trials] == ["COMPLETE"] * 2
    for trial in trials:
        assert 1e-4 <= trial.params["optimizer.lr"] <= 0.1 and trial.params["data.batch_size"] in (32, 64, 128, 256)
        assert trial.params["trainer.epochs"] in (1, 2) and 0.001 <= trial.params["model.dropout"] <= 0.5
    assert type(trials[0].distributions["model.dropout"]).__name__ == "FloatDistribution"
    assert trials[0].distributions["model.dropout"].log and trials[0].distributions["trainer.epochs"].step == 1


@pytest.mark.parametrize(
    "launcher, storage, damage",
    [
        ("basic", "optuna.db", b"SQLite format 3\x00" + b"\xff" * 200),  # a torn database file
        ("local", "optuna.journal", b'{"op_code": 0, "worker_id": "a", "study_na\xff\n'),  # a torn journal line
    ],
)
def test_a_damaged_study_storage_is_exit_2_naming_it_and_left_as_it_was(tmp_path, launcher, storage, damage):
    sweep_dir = tmp_path / "outputs" / "classify-sweep"
    sweep_dir.mkdir(parents=True)
    (sweep_dir / storage).write_bytes(damage)
    result = run_frame(
        [
            "train",
            "-m",
            *SMALL,
            "hparams_search=classify_optuna",
            f"hydra/launcher={launcher}",
            "hydra.sweeper.n_trials=1",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    assert f"the Optuna study in {sweep_dir / storage} cannot be read" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and (sweep_dir / storage).read_bytes() == damage
    assert not list(sweep_dir.glob("*/checkpoints"))  # no member ran
