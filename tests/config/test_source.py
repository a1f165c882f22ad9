"""Reading signatures from source (frame.config.source): where `**kwargs` goes, its keywords are known."""

import textwrap

import pytest

from frame.config import source

MODULE = """
    import helpers


    class Base:
        def __init__(self, width, depth=2):
            pass


    class Child(Base):
        def __init__(self, name, **kwargs):
            super().__init__(**kwargs)


    def _build(kind, *, verbose=False, **kwargs):
        if "legacy" in kwargs:
            kwargs.pop("legacy")
        return Base(kind, **kwargs)


    def build(**kwargs):
        return _build("x", **kwargs)


    def kept(**kwargs):
        options = kwargs
        return Base(**kwargs)


    def unreadable(**kwargs):
        return helpers.make(**kwargs)


    def unused(**kwargs):
        return Base(1)
"""


@pytest.fixture
def module(tmp_path):
    path = tmp_path / "fwd.py"
    path.write_text(textwrap.dedent(MODULE))
    return source.file_module(path, "fwd")


@pytest.mark.parametrize(
    "name,names",
    [
        ("Child", ["name", "width", "depth"]),  # super().__init__(**kwargs)
        ("_build", ["kind", "verbose", "legacy", "depth"]),  # `width` is filled by the call itself
        ("build", ["verbose", "legacy", "depth"]),  # two calls deep; `kind` given positionally on the way
    ],
)
def test_keywords_passed_on_with_double_star_are_known(module, name, names):
    sig = source.signature(source.lookup(module, name))
    assert not sig.var_keyword and sig.names == names
    assert not any(p.required for p in sig.params if p.name not in ("name", "kind"))


@pytest.mark.parametrize("name", ["kept", "unreadable", "unused"])
def test_kwargs_it_cannot_follow_accept_any_keyword(module, name):
    assert source.signature(source.lookup(module, name)).var_keyword
