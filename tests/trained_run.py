"""One tiny trained run (the default experiment with TINY overrides) shared by the tests of the
commands on trained runs: `from tests.trained_run import trained_run` makes the fixture visible."""

import pytest

from tests.conftest import TINY, run_frame


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """(project dir, run dir) of a finished two-epoch run with best.pt and last.pt."""
    project = tmp_path_factory.mktemp("trained")
    run_frame(["train", "name=tiny", "logger=[jsonl]", *TINY], cwd=project, check=0)
    return project, project / "outputs" / "tiny"
