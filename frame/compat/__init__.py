"""The only places frame reaches past a dependency's public API: one module per dependency, each use
with what it needs and the test in tests/compat/ that pins it, so a release that breaks one fails
one named test (and pyproject.toml caps only the dependencies listed here)."""
