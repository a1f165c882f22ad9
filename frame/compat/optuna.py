"""Optuna past its public API: one use, pinned by tests/compat/test_optuna.py.

- `optuna.trial.Trial(study, trial_id)`: a member process takes over the trial the sweeper asked
  for (the documented way is `study.optimize`, whose trials live in one process), so that
  `trial.report` and `trial.should_prune` work there as in an objective function. The trial's id
  comes from its number through the storage's public `get_trial_id_from_study_id_trial_number`.
"""

import optuna


def member_trial(study: optuna.Study, storage, number: int) -> optuna.trial.Trial:
    """Trial `number` of `study` (loaded from `storage`), as an objective function would hold it."""
    trial_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study.study_name), number)
    return optuna.trial.Trial(study, trial_id)
