"""`frame train` end to end in a subprocess, as a user runs it; the task's handling of the garbage collector."""

import gc
import sys

import pytest

from frame.core.errors import FrameError
from frame.launch.corridor import import_job_modules
from tests.conftest import TINY, metrics, run_frame


def test_train_writes_the_run_directory_and_loss_falls(tmp_path):
    result = run_frame(["train", *TINY, "trainer.epochs=3", "name=e2e"], cwd=tmp_path, check=0)
    run_dir = tmp_path / "outputs" / "e2e"
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert (run_dir / "train.log").read_text().count("epoch ") >= 3
    assert {"last.pt", "best.pt"} <= {p.name for p in (run_dir / "checkpoints").iterdir()}
    records = metrics(run_dir)
    assert all({"step", "epoch", "time"} <= set(r) for r in records)
    losses = [r["val/loss"] for r in records if "val/loss" in r]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert "Traceback" not in result.stderr


def test_rerun_with_resume_continues_instead_of_retraining(tmp_path):
    run_frame(["train", *TINY, "name=organs"], cwd=tmp_path, check=0)
    again = run_frame(["train", *TINY, "name=organs"], cwd=tmp_path, check=0)
    assert "already finished" in again.stdout + again.stderr
    more = run_frame(["train", *TINY, "trainer.epochs=3", "name=organs"], cwd=tmp_path, check=0)
    assert "resuming from" in more.stdout + more.stderr
    records = metrics(tmp_path / "outputs/organs")
    assert [r["epoch"] for r in records if "val/loss" in r] == [1, 2, 3]


@pytest.fixture
def probe_project(tmp_path):
    """A project whose model module records, when imported, whether the garbage collector was on."""
    name = f"gc_probe_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text("import gc\n\nON_AT_IMPORT = gc.isenabled()\n\n\nclass Model:\n    pass\n")
    yield tmp_path, name
    sys.modules.pop(name, None)


def test_component_modules_import_with_the_collector_off_then_what_they_made_is_frozen(compose, probe_project):
    root, name = probe_project
    cfg = compose(
        [
            f"project={root}",
            f"model._target_={name}.Model",
            "~model.spatial_dims",
            "~model.in_channels",
            "~model.out_channels",
            "~model.channels",
            "~model.strides",
            "~model.num_res_units",
        ]
    )
    try:
        assert import_job_modules(cfg) is True
        assert sys.modules[name].ON_AT_IMPORT is False
        assert gc.isenabled() and gc.get_freeze_count() > 0  # on again for what building and training allocate
    finally:
        gc.unfreeze()


def test_a_collector_someone_else_disabled_or_froze_is_left_so(compose):
    cfg = compose()
    gc.disable()
    try:
        assert import_job_modules(cfg) is True
        assert not gc.isenabled()
    finally:
        gc.unfreeze()
        gc.enable()
    gc.freeze()
    try:
        count, made_since = gc.get_freeze_count(), [[] for _ in range(1000)]
        assert import_job_modules(cfg) is False  # train() will not unfreeze what it did not freeze
        assert gc.get_freeze_count() < count + len(made_since) and gc.isenabled()  # not frozen again
    finally:
        gc.unfreeze()


def test_a_component_that_cannot_be_imported_is_named_and_the_collector_is_on_again(compose):
    cfg = compose(["loss._target_=torch.nn.NoSuchLoss"])
    with pytest.raises(FrameError, match=r"could not import loss \(torch.nn.NoSuchLoss\)"):
        import_job_modules(cfg)
    gc.unfreeze()
    assert gc.isenabled()
