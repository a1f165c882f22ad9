"""Sweeps on a real SLURM cluster: the one `scripts/slurm-local up` starts on this machine.

The tests marked `slurm` skip when no cluster answers, unless FRAME_REQUIRE_SLURM=1 (as in
.ci/run), where they fail instead. The sbatch golden-file test needs no cluster.
"""

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, require_slurm, run_frame, start_frame

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "slurm_sbatch.txt"
# Tiny jobs: one CPU slot each (the local node has 4 slots per core), little memory.
SLURM = ["hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1"]
SMALL = [
    "experiment=classify",
    "name=classify",
    "data.dataset.num_samples=128",
    "logger=[jsonl]",
]  # name=: the sweeps are outputs/classify-sweep
# ~100 steps an epoch: long enough to be caught by a signal mid-training
LONGER = [
    "experiment=classify",
    "name=classify",
    "data.dataset.num_samples=4000",
    "logger=[jsonl]",
    "trainer.log_every_n_steps=10",
]


def test_generated_sbatch_matches_the_recorded_file(compose, tmp_path, monkeypatch):
    """The sbatch script frame's SLURM preset produces for the GPU example of docs/howto/slurm.md (4 members)."""
    from hydra.utils import instantiate
    from submitit.slurm import slurm

    monkeypatch.setattr(slurm.SlurmExecutor, "affinity", classmethod(lambda cls: 2))  # no srun needed here
    monkeypatch.chdir(tmp_path)
    cfg = compose(
        [
            "hydra/launcher=slurm",
            "experiment=classify",
            "trainer.devices=4",
            "hydra.launcher.gpus_per_node=4",
            "hydra.launcher.partition=gpu",
            "hydra.launcher.timeout_min=720",
        ],
        return_hydra_config=True,
    )
    launcher = instantiate(cfg.hydra.launcher)
    launcher.config = cfg
    executor = launcher.executor()._executor
    executor.parameters["map_count"] = 4  # what map_array sets for a 4-member array
    text = executor._make_submission_file_text(executor._submitit_command_str, "uid")
    text = text.replace(str(executor.folder.parent), "<sweep_dir>/.submitit").replace(executor.python, "<python>")
    if os.environ.get("FRAME_UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()


def test_array_tasks_squeue_shows_grouped_count_one_by_one():
    """squeue -r lists a pending array's tasks one a line, but tasks never split off (a held or cancelled
    array) may come grouped: each member's job id must still find its state."""
    from hydra_plugins.frame_launchers.slurm import _tasks

    assert _tasks("123_[0-2,5%32]") == ["123_0", "123_1", "123_2", "123_5"]
    assert _tasks("123_4") == ["123_4"] and _tasks("77") == ["77"]


# --- the real cluster ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    """Skip (or fail with FRAME_REQUIRE_SLURM=1) unless a SLURM node takes jobs; cancel leftovers after."""
    require_slurm()
    submitted = []
    yield submitted
    for job in submitted:
        subprocess.run(["scancel", job], capture_output=True)


def _members(sweep_dir):
    return json.loads((sweep_dir / "sweep.json").read_text())["members"]


def _wait_for(what, check, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _record(run_dir):
    try:
        return json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        return {}


def _job_state(job_id):
    out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T %r"], capture_output=True, text=True).stdout.split()
    return tuple(out) if out else None


def _weights(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]


@pytest.mark.slurm
def test_a_four_member_sweep_is_one_job_array_and_collects_every_result(cluster, tmp_path):
    sweep = ["-m", *SMALL, "trainer.epochs=1,2", "optimizer.lr=0.01,0.001"]
    result = run_frame(["train", *sweep, *SLURM], cwd=tmp_path, check=0)
    members = _members(tmp_path / "outputs" / "classify-sweep")
    cluster.extend(m["slurm_job_id"] for m in members)
    assert [m["status"] for m in members] == ["complete"] * 4
    (array,) = {m["slurm_job_id"].split("_")[0] for m in members}
    assert sorted(m["slurm_job_id"] for m in members) == [f"{array}_{i}" for i in range(4)]
    assert "submitted 4 members as SLURM job array" in result.stdout + result.stderr

    # the same sweep run here, one member after another, gives the same results
    local = tmp_path / "local"
    local.mkdir()
    run_frame(["train", *sweep], cwd=local, check=0)
    expected = {m["run_dir"]: m["result"] for m in _members(local / "outputs" / "classify-sweep")}
    assert {m["run_dir"]: m["result"] for m in members} == pytest.approx(expected, rel=1e-6)


@pytest.mark.slurm
def test_a_failed_member_has_a_failed_slurm_job_and_error_txt(cluster, tmp_path):
    # fails in training (a bad value such as lr=-1 is refused before anything is submitted): every loss is NaN
    result = run_frame(
        [
            "train",
            "-m",
            *SMALL,
            "trainer.epochs=1",
            "trainer.max_bad_steps=2",
            "loss._target_=tests.training.test_loop.NanOnSteps",
            "+loss.steps=[1,2,3]",
            *SLURM,
        ],
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO)},
    )
    assert result.returncode != 0
    (member,) = _members(tmp_path / "outputs" / "classify-sweep")
    assert member["status"] == "failed" and "non-finite" in member["error"], member
    assert "non-finite" in (tmp_path / "outputs" / "classify-sweep" / member["run_dir"] / "error.txt").read_text()
    show = ["scontrol", "show", "job", member["slurm_job_id"]]
    job = _wait_for(
        "the job to end",
        lambda: (lambda out: re.search(r"JobState=(COMPLETED|FAILED)", out) and out)(
            subprocess.run(show, capture_output=True, text=True).stdout
        ),
        timeout=60,
    )
    assert "JobState=FAILED" in job and "ExitCode=1:0" in job


@pytest.mark.slurm
def test_a_preempted_member_is_requeued_resumes_and_ends_like_an_uninterrupted_one(cluster, tmp_path):
    """Two members that differ only in logging cadence: SIGUSR2 to one of them, as SLURM does before
    a time limit or on preemption. It checkpoints, is requeued, resumes in the same run directory,
    and ends with the other member's result and weights."""
    process = start_frame(
        ["train", "-m", *LONGER, "trainer.epochs=12", "trainer.log_every_n_steps=10,20", *SLURM], tmp_path
    )
    sweep_dir = tmp_path / "outputs" / "classify-sweep"
    members = _wait_for(
        "the array",
        lambda: (
            (sweep_dir / "sweep.json").exists()
            and all(m["slurm_job_id"] for m in _members(sweep_dir))
            and _members(sweep_dir)
        ),
    )
    cluster.extend(m["slurm_job_id"] for m in members)
    preempted, other = members
    run_dir = sweep_dir / preempted["run_dir"]
    _wait_for(
        "training steps",
        lambda: (run_dir / "metrics.jsonl").exists() and "train/loss" in (run_dir / "metrics.jsonl").read_text(),
    )
    subprocess.run(["scancel", "--signal=USR2", preempted["slurm_job_id"]], check=True)

    # requeued: SLURM holds it ~120 s (BeginTime); release it 3 s from now, not at once: slurmd revokes
    # the old launch credential with one-second resolution, and a restart within that second is killed
    # as "non-startable: Job credential revoked" (seen in CI: the member then never ran again)
    _wait_for("the requeue", lambda: (_job_state(preempted["slurm_job_id"]) or ("",))[0] == "PENDING")
    subprocess.run(["scontrol", "update", f"JobId={preempted['slurm_job_id']}", "StartTime=now+3"], check=True)
    output, _ = process.communicate(timeout=400)
    assert process.returncode == 0, output

    record = _record(run_dir)
    assert [a["status"] for a in record["attempts"]] == ["interrupted", "complete"]
    assert record["attempts"][1]["slurm"]["restart_count"] == "1"
    log = (run_dir / "train.log").read_text()
    assert "stopped by SIGUSR2" in log and "resuming from" in log
    summary = {m["run_dir"]: m for m in _members(sweep_dir)}
    assert summary[preempted["run_dir"]]["attempts"] == 2 and summary[other["run_dir"]]["attempts"] == 1
    assert summary[preempted["run_dir"]]["result"] == summary[other["run_dir"]]["result"]
    for name, tensor in _weights(sweep_dir / other["run_dir"]).items():
        torch.testing.assert_close(_weights(run_dir)[name], tensor, rtol=0, atol=0)


@pytest.mark.slurm
def test_an_interrupted_sweep_run_again_completes_only_the_missing_members(cluster, tmp_path):
    # 12 epochs keep the long members running well after the 1-epoch ones end (4 did not, once)
    command = ["train", "-m", *LONGER, "trainer.epochs=1,12", "optimizer.lr=0.01,0.001", *SLURM]
    process = start_frame(command, tmp_path)
    sweep_dir = tmp_path / "outputs" / "classify-sweep"
    members = _wait_for(
        "the array",
        lambda: (
            (sweep_dir / "sweep.json").exists()
            and all(m["slurm_job_id"] for m in _members(sweep_dir))
            and _members(sweep_dir)
        ),
    )
    cluster.extend(m["slurm_job_id"] for m in members)
    short = [m for m in members if "trainer.epochs=1" in m["run_dir"].split(",")]
    assert len(short) == 2
    _wait_for(
        "the 1-epoch members", lambda: all(_record(sweep_dir / m["run_dir"]).get("status") == "complete" for m in short)
    )
    # the user's terminal goes away and the remaining jobs are cancelled (they checkpoint on SIGTERM)
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=60)
    array = members[0]["slurm_job_id"].split("_")[0]
    subprocess.run(["scancel", array], check=True)
    _wait_for("the cancelled jobs to end", lambda: _job_state(array) is None, timeout=120)

    again = run_frame(command, cwd=tmp_path, check=0)
    assert "2 of 4 members already complete" in again.stdout + again.stderr
    assert "submitted 2 members as SLURM job array" in again.stdout + again.stderr
    summary = {m["run_dir"]: m for m in _members(sweep_dir)}
    cluster.extend(m["slurm_job_id"] for m in summary.values())
    assert all(m["status"] == "complete" for m in summary.values())
    for m in short:
        assert summary[m["run_dir"]]["skipped"] and summary[m["run_dir"]]["attempts"] == 1
    for m in summary.values():
        if not m["skipped"]:
            assert m["attempts"] == 2 and m["slurm_job_id"].split("_")[0] != array
            assert "resuming from" in (sweep_dir / m["run_dir"] / "train.log").read_text()


@pytest.mark.slurm
def test_ctrl_c_stops_waiting_and_the_same_command_waits_for_the_running_job(cluster, tmp_path):
    command = ["train", "-m", *LONGER, "trainer.epochs=10", *SLURM]
    process = start_frame(command, tmp_path)
    sweep_dir = tmp_path / "outputs" / "classify-sweep"
    (member,) = _wait_for(
        "the job",
        lambda: (
            (sweep_dir / "sweep.json").exists()
            and all(m["slurm_job_id"] for m in _members(sweep_dir))
            and _members(sweep_dir)
        ),
    )
    cluster.append(member["slurm_job_id"])
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 75 and "the submitted jobs keep running" in output
    assert _job_state(member["slurm_job_id"]) is not None  # Ctrl-C stopped the waiting, not the job

    again = run_frame(command, cwd=tmp_path, check=0)
    assert "still queued or running from an earlier run of this sweep" in again.stdout + again.stderr
    (done,) = _members(sweep_dir)
    assert done["status"] == "complete" and done["slurm_job_id"] == member["slurm_job_id"]
    assert done["attempts"] == 1  # not submitted a second time


@pytest.mark.slurm
def test_a_sweep_larger_than_an_array_is_split_into_arrays_and_stays_one_sweep(cluster, tmp_path):
    """max_array_size=2 stands in for the cluster's MaxArraySize (1001): 3 members, 2 arrays, the
    second one waiting for the first (afterany) so that array_parallelism stays the sweep's limit."""
    result = run_frame(
        ["train", "-m", *SMALL, "trainer.epochs=1", "seed=1,2,3", *SLURM, "hydra.launcher.max_array_size=2"],
        cwd=tmp_path,
        check=0,
    )
    members = _members(tmp_path / "outputs" / "classify-sweep")
    cluster.extend(m["slurm_job_id"] for m in members)
    assert [(m["member"], m["status"]) for m in members] == [(0, "complete"), (1, "complete"), (2, "complete")]
    first, second = sorted({m["slurm_job_id"].split("_")[0] for m in members}, key=int)
    assert [m["slurm_job_id"] for m in members] == [f"{first}_0", f"{first}_1", second]  # one member: a plain job
    assert f"submitted 3 members as SLURM job arrays {first} {second}" in result.stdout + result.stderr
    assert "sweep summary" in result.stdout + result.stderr and len(members) == 3


@pytest.mark.slurm
def test_members_cancelled_before_they_start_are_reported_as_cancelled(cluster, tmp_path):
    """The array is held (sbatch --hold) and cancelled: frame reports every member as cancelled, not
    failed, exits 75, and the same command runs them."""
    held = "+hydra.launcher.additional_parameters={hold:true}"
    command = ["train", "-m", *SMALL, "trainer.epochs=1", "seed=1,2", *SLURM]
    process = start_frame([*command, held], tmp_path)
    sweep_dir = tmp_path / "outputs" / "classify-sweep"
    members = _wait_for(
        "the array",
        lambda: (
            (sweep_dir / "sweep.json").exists()
            and all(m["slurm_job_id"] for m in _members(sweep_dir))
            and _members(sweep_dir)
        ),
    )
    cluster.extend(m["slurm_job_id"] for m in members)
    subprocess.run(["scancel", members[0]["slurm_job_id"].split("_")[0]], check=True)
    output, _ = process.communicate(timeout=60)
    members = _members(sweep_dir)
    assert process.returncode == 75, output
    assert [m["status"] for m in members] == ["cancelled", "cancelled"], members
    assert all("cancelled before it started" in m["error"] for m in members)
    assert "cancelled" in output and not any((sweep_dir / m["run_dir"]).exists() for m in members)
    listed = json.loads(run_frame(["runs", str(sweep_dir), "--json"], cwd=tmp_path, check=0).stdout)
    assert sorted((r["run"], r["status"]) for r in listed) == [("seed=1", "cancelled"), ("seed=2", "cancelled")]

    again = run_frame(command, cwd=tmp_path, check=0)
    assert [m["status"] for m in _members(sweep_dir)] == ["complete", "complete"], again.stderr


@pytest.mark.slurm
def test_ddp_with_two_tasks_per_node_matches_one_process(cluster, tmp_path):
    exact = [
        "experiment=classify",
        "data.dataset.num_samples=320",
        "model.dropout=0",
        "trainer.epochs=3",
        "logger=[jsonl]",
    ]
    sweep = ["train", "-m", *exact, "name=classify", "data.batch_size=16", "trainer.devices=2", *SLURM]
    run_frame(sweep, cwd=tmp_path, check=0)
    sweep_dir = tmp_path / "outputs" / "classify-sweep"
    (member,) = _members(sweep_dir)
    cluster.append(member["slurm_job_id"])
    run_dir = sweep_dir / member["run_dir"]
    assert member["status"] == "complete"
    log = (run_dir / "train.log").read_text()
    assert "rank 0 of 2 joined the process group (gloo, slurm)" in log and "rank 1" not in log  # rank 0 writes alone
    job = subprocess.run(["scontrol", "show", "job", member["slurm_job_id"]], capture_output=True, text=True).stdout
    assert "NumTasks=2" in job

    single = tmp_path / "single"
    single.mkdir()
    run_frame(["train", *exact, "data.batch_size=32", "name=one"], cwd=single, env={"OMP_NUM_THREADS": "1"}, check=0)
    for name, tensor in _weights(single / "outputs" / "one").items():
        torch.testing.assert_close(_weights(run_dir)[name], tensor, rtol=1e-5, atol=1e-6)


@pytest.mark.slurm
def test_a_pruned_search_on_slurm_reports_through_the_journal_file(cluster, tmp_path):
    """Members in SLURM jobs report to the study in the sweep directory's journal file; odd trials are
    pruned after their first epoch (a project's own pruner), and a resumed search runs none again."""
    from tests.launch.test_sweep import check_pruned_search, pruned_search

    sweep_dir = tmp_path / "outputs" / "classify-sweep"
    slurm = [*SLURM, "hydra.launcher.timeout_min=10", "hydra.launcher.signal_delay_s=60"]
    pruned_search(tmp_path, slurm, n_trials=4)
    members = check_pruned_search(sweep_dir, 4)
    cluster.extend(m["slurm_job_id"] for m in members.values())
    assert (sweep_dir / "optuna.journal").is_file() and not (sweep_dir / "optuna.db").exists()
    assert all(m["slurm_job_id"] for m in members.values())

    again = pruned_search(tmp_path, slurm, n_trials=4)
    assert "4 of 4 trials finished (2 pruned)" in again.stdout + again.stderr
    assert "submitted" not in again.stdout + again.stderr  # nothing left to run
