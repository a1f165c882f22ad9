"""Pin of the one use of Optuna past its public API (frame/compat/optuna.py), on a real journal file."""

import optuna

from frame.compat.optuna import member_trial
from frame.config.optuna_study import open_storage


def test_a_member_reports_to_its_trial_by_number(tmp_path):
    """What the sweeper asks in one process, a member elsewhere reports to and prunes by its number."""
    spec = f"journal:{tmp_path / 'study.journal'}"
    study = optuna.create_study(study_name="s", storage=open_storage(spec), direction="maximize")
    asked = [study.ask({"x": optuna.distributions.FloatDistribution(0, 1)}) for _ in range(2)]

    storage = open_storage(spec)  # the member's own view, as in another process
    theirs = optuna.load_study(study_name="s", storage=storage, pruner=optuna.pruners.ThresholdPruner(lower=0.5))
    trial = member_trial(theirs, storage, asked[1].number)
    assert trial.number == 1 and trial.params == asked[1].params
    trial.report(0.9, step=1)
    assert not trial.should_prune()
    trial.report(0.1, step=2)
    assert trial.should_prune()  # below the threshold: the pruner sees this trial's own reports
    theirs.tell(trial.number, state=optuna.trial.TrialState.PRUNED)

    reloaded = {t.number: t for t in optuna.load_study(study_name="s", storage=open_storage(spec)).trials}
    assert reloaded[1].state.name == "PRUNED" and reloaded[1].intermediate_values == {1: 0.9, 2: 0.1}
    assert reloaded[0].state.name == "RUNNING" and not reloaded[0].intermediate_values
