"""Name resolution: tiers in order, shadowing, ambiguity, did-you-mean, and no heavy imports."""

import importlib
import json
import subprocess
import sys
import textwrap

import pytest

from frame.config import source
from frame.config.resolver import TIERS, ResolveError, Resolver
from tests.conftest import run_frame


def _write(root, files):
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


@pytest.fixture
def project(tmp_path):
    _write(
        tmp_path,
        {
            "src/Models/Net.py": "class Net:\n    def __init__(self, width=4):\n        pass\n",
            "src/losses.py": "from torch.nn import CrossEntropyLoss\n\nclass MyLoss:\n    pass\n",
            "src/Data/transforms.py": "class Transpose:\n    def __init__(self, a, b):\n        pass\n",
            "src/Evaluators/Score.py": "class Score:\n    pass\n",
            "src/MetricLoggers/Printer.py": "class Printer:\n    pass\n",
            "src/Datasets/Cells.py": "class Cells:\n    LABELS = ('a', 'b')\n",
        },
    )
    return tmp_path


@pytest.mark.parametrize(
    "name,kind,target",
    [
        ("Net", "model", "src.Models.Net.Net"),
        ("MyLoss", "loss", "src.losses.MyLoss"),
        ("Transpose", "transform", "src.Data.transforms.Transpose"),  # the project shadows frame and MONAI
        ("Score", "evaluator", "src.Evaluators.Score.Score"),
        ("Printer", "metric_logger", "src.MetricLoggers.Printer.Printer"),
        ("Cells", "dataset", "src.Datasets.Cells.Cells"),
        ("StandardScaleTensor", "transform", "frame.data.transforms.StandardScaleTensor"),
        ("Dice", "evaluator", "frame.training.evaluators.Dice"),
        ("JsonlLogger", "metric_logger", "frame.tracking.jsonl.JsonlLogger"),
        ("SyntheticOrgans", "dataset", "frame.data.synthetic.SyntheticOrgans"),
        ("resnet18", "model", "torchvision.models.resnet18"),
        ("CIFAR10", "dataset", "torchvision.datasets.CIFAR10"),
        ("ToTensor", "transform", "torchvision.transforms.ToTensor"),
        ("UNet", "model", "monai.networks.nets.UNet"),
        ("DiceLoss", "loss", "monai.losses.DiceLoss"),
        ("Spacingd", "transform", "monai.transforms.Spacingd"),
        ("CacheDataset", "dataset", "monai.data.CacheDataset"),
        ("LinearLR", "lr_scheduler", "monai.optimizers.lr_scheduler.LinearLR"),  # MONAI before torch
        ("CrossEntropyLoss", "loss", "torch.nn.CrossEntropyLoss"),  # imported into src/losses.py: not defined there
        ("Adam", "optimizer", "torch.optim.Adam"),
        ("MultiStepLR", "lr_scheduler", "torch.optim.lr_scheduler.MultiStepLR"),
        ("my.own.Thing", "model", "my.own.Thing"),  # a dotted path is used as is
    ],
)
def test_tiers_in_order(project, name, kind, target):
    assert Resolver(project).resolve(name, kind).target == target


def test_without_the_project_frame_wins_and_monai_is_listed_after(tmp_path):
    resolution = Resolver(tmp_path).resolve("Transpose", "transform")
    assert resolution.target == "frame.data.transforms.Transpose"
    assert [m.target for m in resolution.others] == ["monai.transforms.Transpose"]


def test_all_matches_are_listed_in_tier_order(project):
    tiers = [m.tier for m in Resolver(project).matches("Transpose", "transform")]
    assert tiers == ["project", "frame", "MONAI"]


def test_two_definitions_in_one_tier_are_an_error_listing_both(project):
    _write(project, {"src/Models/Other.py": "class Net:\n    pass\n"})
    with pytest.raises(ResolveError) as error:
        Resolver(project).resolve("Net", "model")
    message = str(error.value)
    assert "src.Models.Net.Net" in message and "src.Models.Other.Net" in message
    assert "src/Models/Other.py:1" in message


@pytest.mark.parametrize(
    "name,kind,suggestion",
    [
        ("Adamm", "optimizer", "Adam"),
        ("UNett", "model", "UNet"),
        ("Nett", "model", "Net"),
        ("crossentropyloss", "loss", "CrossEntropyLoss"),
        ("CropAroundBrainstem", "transform", None),
    ],
)
def test_a_name_found_nowhere_suggests_across_tiers(project, name, kind, suggestion):
    with pytest.raises(ResolveError) as error:
        Resolver(project).resolve(name, kind)
    message = str(error.value)
    assert "MONAI (" in message  # the places searched are named
    if suggestion:
        assert f"Did you mean '{suggestion}'?" in message


def test_function_targets_are_marked(project):
    _write(project, {"src/Data/transforms.py": "def clip(x, low=0):\n    return x\n"})
    assert Resolver(project).resolve("clip", "transform").function
    assert not Resolver(project).resolve("Adam", "optimizer").function
    assert Resolver(project).resolve("resnet18", "model").function


@pytest.mark.slow
def test_resolving_imports_neither_torch_nor_torchvision_nor_monai(project):
    probe = textwrap.dedent(f"""
        import json, sys
        from frame.config.resolver import Resolver
        r = Resolver({str(project)!r})
        for name, kind in [("Net", "model"), ("UNet", "model"), ("Adam", "optimizer"), ("ToTensor", "transform"),
                           ("MultiStepLR", "lr_scheduler"), ("Spacingd", "transform")]:
            r.resolve(name, kind)
        try:
            r.resolve("Adamm", "optimizer")
        except Exception:
            pass
        print(json.dumps([m for m in ("torch", "torchvision", "monai") if m in sys.modules]))
    """)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


@pytest.mark.slow
def test_read_exports_exist_in_the_imported_modules():
    """The ast reading of every library tier agrees with the real modules (no name that would fail to import)."""
    for kinds in (TIERS["torchvision"], TIERS["MONAI"], TIERS["torch"]):
        for modules in kinds.values():
            for dotted in modules:
                names = source.exported_names(dotted)
                assert names, dotted
                module = importlib.import_module(dotted)
                absent = {n for n in names if not hasattr(module, n)} - {"mv2_all", "mv3_all"}
                assert not absent, (dotted, sorted(absent))


def test_signatures_are_read_from_source():
    adam = source.signature(source.locate("torch.optim.Adam"))
    assert adam.names[:2] == ["params", "lr"] and not adam.params[1].required
    unet = source.signature(source.locate("monai.networks.nets.UNet"))
    assert {"spatial_dims", "in_channels", "out_channels", "channels", "strides"} <= {
        p.name for p in unet.params if p.required
    }
    resnet18 = source.signature(source.locate("torchvision.models.resnet18"))  # **kwargs followed into ResNet
    assert not resnet18.var_keyword and {"weights", "num_classes", "zero_init_residual"} <= set(resnet18.names)


def test_frame_which_prints_the_winner_and_the_rest(project):
    out = run_frame(["which", "Transpose", "--project", str(project)], cwd=project, check=0).stdout
    lines = out.splitlines()
    assert lines[0] == "Transpose (transform)"
    assert lines[1].split()[:3] == ["->", "src.Data.transforms.Transpose", "project"]
    assert "frame.data.transforms.Transpose" in lines[2] and "monai.transforms.Transpose" in lines[3]


def test_frame_which_unknown_name_exits_2(tmp_path):
    result = run_frame(["which", "Adamm"], cwd=tmp_path)
    assert result.returncode == 2 and "Did you mean 'Adam'?" in result.stderr
