"""One job across two simulated hosts: `scripts/slurm-local up --nodes 2` (each node a slurmd in its
own network, UTS and mount namespace on a bridge), gloo over the links between them.

Skipped unless two nodes take jobs (failed instead with FRAME_REQUIRE_SLURM=1, as in .ci/run's
second phase). Every job is the tiny default experiment with one thread a rank, so that a 2-node
run, a `trainer.devices=2` run and a resumed run give the same weights bit for bit.
"""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY, frame_command, require_slurm, run_frame, start_frame
from tests.hydra_plugins.test_slurm import _members, _record, _wait_for

pytestmark = [pytest.mark.slurm, pytest.mark.multinode, pytest.mark.slow]

ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # the ranks' float sums in the same order wherever they run
JOB = [*TINY, "logger=[jsonl]", "trainer.checkpoint_every_n_epochs=0", "trainer.dist_timeout_s=60"]
EPOCHS = 30  # long enough (several seconds) to be caught mid-run
TWO_NODES = [
    "hydra/launcher=slurm",
    "hydra.launcher.nodes=2",
    "hydra.launcher.tasks_per_node=1",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
]
NODES = ["frame-node1", "frame-node2"]


@pytest.fixture(scope="module")
def cluster():
    """Skip unless 2 SLURM nodes take jobs; cancel what the tests submitted after them."""
    require_slurm(nodes=2)
    submitted = []
    yield submitted
    for job in submitted:
        subprocess.run(["scancel", job], capture_output=True)


@pytest.fixture(scope="module")
def reference(cluster, tmp_path_factory):
    """An uninterrupted 2-node run of the job ({EPOCHS} epochs): the run directory."""
    cwd = tmp_path_factory.mktemp("reference")
    run_frame(
        ["train", "-m", *JOB, f"trainer.epochs={EPOCHS}", "name=ref", *TWO_NODES], cwd=cwd, env=ONE_THREAD, check=0
    )
    (member,) = _members(cwd / "outputs" / "ref-sweep")
    cluster.append(member["slurm_job_id"])
    return cwd / "outputs" / "ref-sweep" / member["run_dir"]


def _weights(run_dir):
    return torch.load(Path(run_dir) / "checkpoints" / "last.pt", weights_only=True)["model"]


def _assert_same_weights(run_dir, other):
    for name, tensor in _weights(other).items():
        torch.testing.assert_close(_weights(run_dir)[name], tensor, rtol=0, atol=0)


def _epoch(run_dir) -> int:
    """The last epoch metrics.jsonl holds (0 before the first)."""
    path = Path(run_dir) / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return max([json.loads(line).get("epoch", 0) for line in lines if line.endswith("}")] or [0])


def _started_member(sweep_dir, cluster):
    members = _wait_for(
        "the job",
        timeout=240,
        check=lambda: (
            (sweep_dir / "sweep.json").exists()
            and all(m["slurm_job_id"] for m in _members(sweep_dir))
            and _members(sweep_dir)
        ),
    )
    cluster.extend(m["slurm_job_id"] for m in members)
    return members[0]


def _task_pids(node: str) -> list[int]:
    """The submitit tasks (frame's ranks) running in node's network namespace."""
    pids = subprocess.run(["ip", "netns", "pids", node], capture_output=True, text=True, check=True).stdout.split()
    tasks = []
    for pid in pids:
        try:
            if b"submitit.core._submit" in Path(f"/proc/{pid}/cmdline").read_bytes():
                tasks.append(int(pid))
        except OSError:
            pass
    return tasks


def _job_state(job_id):
    out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True).stdout.split()
    return out[0] if out else None


def test_a_two_node_job_trains_like_two_processes_on_one_machine(cluster, reference, tmp_path):
    record = _record(reference)
    assert record["status"] == "complete" and record["hosts"] == NODES
    assert len(record["attempts"]) == 1 and record["attempts"][0]["hosts"] == NODES
    log = (reference / "train.log").read_text()
    assert "rank 0 of 2 joined the process group (gloo, slurm) on frame-node1, frame-node2" in log
    job = subprocess.run(
        ["scontrol", "show", "job", record["attempts"][0]["slurm"]["job_id"]], capture_output=True, text=True
    ).stdout
    assert "NumNodes=2" in job and "NumTasks=2" in job

    run_frame(
        ["train", *JOB, f"trainer.epochs={EPOCHS}", "trainer.devices=2", "name=here"],
        cwd=tmp_path,
        env=ONE_THREAD,
        check=0,
    )
    here = tmp_path / "outputs" / "here"
    for name, tensor in _weights(here).items():
        torch.testing.assert_close(_weights(reference)[name], tensor, rtol=1e-5, atol=0)
    # rank 0 alone writes: the same files as the one-machine run, each metric once
    assert sorted(p.name for p in (reference / "checkpoints").iterdir()) == sorted(
        p.name for p in (here / "checkpoints").iterdir()
    )
    assert (reference / "metrics.jsonl").read_text().count('"train/loss"') == (
        here / "metrics.jsonl"
    ).read_text().count('"train/loss"')
    assert "rank 1" not in log


def test_a_node_that_dies_fails_the_job_and_the_same_command_resumes_to_the_same_weights(cluster, reference, tmp_path):
    command = ["train", "-m", *JOB, f"trainer.epochs={EPOCHS}", "name=ref", *TWO_NODES]
    process = start_frame(command, tmp_path, env=ONE_THREAD)
    sweep_dir = tmp_path / "outputs" / "ref-sweep"
    member = _started_member(sweep_dir, cluster)
    run_dir = sweep_dir / member["run_dir"]
    _wait_for("a few epochs", lambda: _epoch(run_dir) >= 3)
    (rank1,) = _task_pids("frame-node2")
    os.kill(rank1, signal.SIGKILL)  # node 2 is gone: its rank dies without a word
    killed_at = time.monotonic()
    _wait_for("rank 0 to fail", lambda: _record(run_dir).get("status") == "failed", timeout=90)
    failed_after = time.monotonic() - killed_at
    output, _ = process.communicate(timeout=120)
    assert process.returncode != 0, output
    assert failed_after < 60  # trainer.dist_timeout_s: never waits on the dead rank for longer
    assert _epoch(run_dir) < EPOCHS  # it did stop mid-run
    print(f"rank 0 failed {failed_after:.1f} s after its peer's node died")

    again = run_frame(command, cwd=tmp_path, env=ONE_THREAD, check=0)
    assert "resuming from" in (run_dir / "train.log").read_text()
    record = _record(run_dir)
    assert [a["status"] for a in record["attempts"]] == ["failed", "complete"], again.stdout
    cluster.extend(m["slurm_job_id"] for m in _members(sweep_dir))
    _assert_same_weights(run_dir, reference)


def test_usr2_to_a_two_node_job_stops_both_ranks_at_one_step_requeues_and_resumes(cluster, reference, tmp_path):
    process = start_frame(
        ["train", "-m", *JOB, f"trainer.epochs={EPOCHS}", "name=ref", *TWO_NODES], tmp_path, env=ONE_THREAD
    )
    sweep_dir = tmp_path / "outputs" / "ref-sweep"
    member = _started_member(sweep_dir, cluster)
    run_dir = sweep_dir / member["run_dir"]
    _wait_for("a few epochs", lambda: _epoch(run_dir) >= 3)
    subprocess.run(["scancel", "--signal=USR2", member["slurm_job_id"]], check=True)  # every task of the job

    # requeued: held ~120 s (BeginTime); released 3 s later (a restart within the second loses its credential)
    _wait_for("the requeue", lambda: _job_state(member["slurm_job_id"]) == "PENDING", timeout=120)
    time.sleep(3)
    subprocess.run(["scontrol", "update", f"JobId={member['slurm_job_id']}", "StartTime=now"], check=True)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output

    record = _record(run_dir)
    assert [a["status"] for a in record["attempts"]] == ["interrupted", "complete"]
    assert all(a["hosts"] == NODES for a in record["attempts"])
    log = (run_dir / "train.log").read_text()
    assert log.count("stopped by SIGUSR2") == 1 and "resuming from" in log  # one checkpoint, by rank 0
    (rank1_stderr,) = (sweep_dir / ".submitit").glob("*/*_1_log.err")
    assert "Traceback" not in rank1_stderr.read_text()
    _assert_same_weights(run_dir, reference)


def test_torchrun_on_two_hosts_trains_one_job_like_the_slurm_launcher(cluster, reference, tmp_path):
    """torchrun's c10d rendezvous on node 1, one torchrun in each node's namespaces (own hostname)."""
    torchrun = [
        str(Path(frame_command([])[0]).with_name("torchrun")),
        "--nnodes=2",
        "--nproc-per-node=1",
        "--rdzv-backend=c10d",
        "--rdzv-endpoint=frame-node1:29411",
        "--rdzv-id=frame-test",
        "--max-restarts=0",
        "-m",
        "frame",
        "train",
        *JOB,
        f"trainer.epochs={EPOCHS}",
        "name=torchrun",
    ]
    env = {**os.environ, **ONE_THREAD, "GLOO_SOCKET_IFNAME": "eth0", "PYTHONUNBUFFERED": "1"}
    hosts = [
        subprocess.Popen(
            [
                "nsenter",
                f"--net=/run/netns/{node}",
                "unshare",
                "--uts",
                "sh",
                "-c",
                'hostname "$0" && exec "$@"',
                node,
                *torchrun,
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for node in NODES
    ]
    outputs = [host.communicate(timeout=300)[0] for host in hosts]
    assert [host.returncode for host in hosts] == [0, 0], "\n".join(outputs)

    run_dir = tmp_path / "outputs" / "torchrun"
    record = _record(run_dir)
    assert record["status"] == "complete" and sorted(record["hosts"]) == NODES
    log = (run_dir / "train.log").read_text()
    assert "joined the process group (gloo, torchrun)" in log and "rank 1" not in log
    _assert_same_weights(run_dir, reference)


def test_a_sweep_of_two_node_members_queued_behind_each_other_completes_and_reruns_skip_them(cluster, tmp_path):
    # every CPU slot of both nodes for one member: the second waits in the queue for the first
    command = [
        "train",
        "-m",
        *JOB,
        "trainer.epochs=2",
        "optimizer.lr=0.01,0.001",
        "name=sweep",
        *TWO_NODES,
        "hydra.launcher.cpus_per_task=4",
    ]
    run_frame(command, cwd=tmp_path, env=ONE_THREAD, check=0)
    sweep_dir = tmp_path / "outputs" / "sweep-sweep"
    members = _members(sweep_dir)
    cluster.extend(m["slurm_job_id"] for m in members)
    assert [m["status"] for m in members] == ["complete"] * 2
    first, second = (_record(sweep_dir / m["run_dir"])["attempts"][0] for m in members)
    assert first["hosts"] == second["hosts"] == NODES
    assert min(first["started"], second["started"]) < max(first["started"], second["started"]) and (
        second["started"] >= first["ended"] or first["started"] >= second["ended"]
    )  # one after the other

    again = run_frame(command, cwd=tmp_path, env=ONE_THREAD, check=0)
    assert "2 of 2 members already complete" in again.stdout + again.stderr
    assert "submitted" not in again.stdout + again.stderr
    assert [m["attempts"] for m in _members(sweep_dir)] == [1, 1]
