import re

import pytest

from frame.config.validate import validate
from frame.core.errors import FrameError


@pytest.mark.parametrize(
    "override,key",
    [
        ("trainer.epochs=0", "trainer.epochs"),
        ("data.split_ratio=0", "data.split_ratio"),
        ("data.num_workers=-1", "data.num_workers"),
        ("trainer.device=gpu", "trainer.device"),
        ("trainer.grad_norm_clip=-1", "trainer.grad_norm_clip"),
        ("name=../escape", "name"),
        ("optimizer.lr=nan", "optimizer.lr"),
        ("optimizer.lr=-0.1", "optimizer.lr"),
        ("seed=-1", "seed"),
        ("predict.overlap=1", "predict.overlap"),
        ("predict.roi_size=[64,0,32]", "predict.roi_size"),
        ("predict.postprocess=softmax", "predict.postprocess"),
        ("name=${oc.env:FRAME_SURELY_UNSET}", "name"),
        ("~model", "model has no value"),
    ],
)
def test_out_of_range_values_name_their_key(compose, override, key):
    with pytest.raises(FrameError, match=key):
        validate(compose([override]))


def test_default_config_is_valid(compose):
    validate(compose())


@pytest.mark.parametrize(
    "override,message",
    [
        ("+trainer.epoch=5", "trainer.epoch is not a setting of trainer. Did you mean 'epochs'?"),
        ("+data.batchsize=8", "data.batchsize is not a setting of data. Did you mean 'batch_size'?"),
        ("+sed=1", "sed is not a setting of the config. Did you mean 'seed'?"),
    ],
)
def test_a_plus_key_on_a_schema_node_is_refused_with_a_did_you_mean(compose, override, message):
    with pytest.raises(FrameError) as error:
        validate(compose([override]))
    assert message in str(error.value)


def test_a_plus_key_on_a_component_is_left_to_the_constructor_check(compose):
    validate(compose(["+model.dropout=0.1"]))


@pytest.mark.parametrize("device", ["mps", "cuda", "cuda:0"])
def test_a_device_this_machine_lacks_is_refused_without_torch(compose, device, monkeypatch):
    from frame.config import validate as module

    monkeypatch.setattr(module, "glob", lambda pattern: [])  # no /dev/nvidia0
    monkeypatch.setattr(module.sys, "platform", "linux")
    with pytest.raises(FrameError, match=f"trainer.device={device} but this machine has no"):
        module.check_device(compose([f"trainer.device={device}"]))
    monkeypatch.setattr(module, "glob", lambda pattern: ["/dev/nvidia0"])
    if device != "mps":
        module.check_device(compose([f"trainer.device={device}"]))


@pytest.mark.parametrize(
    "override, message",
    [
        ("seed=4294967296", "seed=4294967296 is invalid: expected an integer >= 0 and < 2**32"),
        (
            "data.batch_size=99999999999999999999",
            "data.batch_size=99999999999999999999 is out of range: expected an integer that fits 64 bits",
        ),
        ("+model.deep=" + "[" * 40 + "1" + "]" * 40, "model.deep[0][0]"),
    ],
)
def test_values_no_consumer_takes_are_refused_where_they_enter(compose, override, message):
    with pytest.raises(FrameError, match=re.escape(message)):
        validate(compose([override]))


def test_a_json_job_with_invalid_utf8_or_absurd_nesting_names_the_file(tmp_path):
    from frame.config.json_job import load

    (tmp_path / "job.json").write_bytes(b'{\n  "name": "caf\xe9"\n}')
    with pytest.raises(FrameError, match=r"job.json:2: invalid UTF-8 \(byte 16\)"):
        load(tmp_path / "job.json")
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(FrameError, match="deep.json: nested too deep"):
        load(tmp_path / "deep.json")
