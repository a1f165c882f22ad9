"""frame's edges with its dependencies.

One module per dependency holds every use of its private API (`hydra.py`, `omegaconf.py`, `submitit.py`, `optuna.py`),
each use with what it needs and the test in tests/compat/ that pins it, so a release that breaks one
fails one named test; pyproject.toml caps only the dependencies with such a use. `extras.py` turns a
missing optional dependency into exit 2 with the pip command.
"""
