import pytest

from frame.config.validate import validate
from frame.errors import FrameError


@pytest.mark.parametrize(
    "override,key",
    [
        ("trainer.epochs=0", "trainer.epochs"),
        ("data.split_ratio=0", "data.split_ratio"),
        ("data.num_workers=-1", "data.num_workers"),
        ("trainer.device=gpu", "trainer.device"),
        ("trainer.grad_norm_clip=-1", "trainer.grad_norm_clip"),
        ("name=../escape", "name"),
    ],
)
def test_out_of_range_values_name_their_key(compose, override, key):
    with pytest.raises(FrameError, match=key):
        validate(compose([override]))


def test_default_config_is_valid(compose):
    validate(compose())
