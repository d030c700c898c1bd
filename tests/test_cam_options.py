"""Classifier options for small data: a frozen backbone, and warm-ups that scale with the run."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from stages import cam
from stages.core.checks import OptionError
from stages.core.io.checkpoint import load_checkpoint
from stages.core.nets import build_backbone
from stages.core.options import OptionTextError, warmup
from stages.core.train.classifier import ClassifierConfig
from stages.core.train.fit import OptimConfig, RunConfig
from stages.core.train.loop import Schedule, warmup_length


def _weights_file(tmp_path):
    torch.manual_seed(1)
    path = tmp_path / "tiny.pt"
    # the file layout of an ImageNet download: keys relative to the trunk
    torch.save({k.removeprefix("trunk."): v for k, v in build_backbone("tiny", "none").state_dict().items()}, path)
    return path


def test_frozen_backbone_trains_only_the_class_layer(tmp_path, train_data):
    weights = _weights_file(tmp_path)
    before = {k: v.clone() for k, v in build_backbone("tiny", weights).state_dict().items()}
    cfg = cam.CamConfig(run=RunConfig(out=tmp_path / "cam", device="cpu"), data=train_data,
                        model=ClassifierConfig("tiny", str(weights), freeze_backbone=True),
                        optim=OptimConfig(epochs=2, batch_size=4, crop=48, lr=0.05, warmup_iters=1), scales=(1.0,))
    cam.run(cfg)
    state = load_checkpoint(tmp_path / "cam" / "classifier" / "final.pt")["model"]
    moved = [k for k, v in before.items() if not torch.equal(state[f"backbone.{k}"].float(), v.float())]
    # weights and BatchNorm statistics alike: the backbone ran in eval mode
    assert moved == []
    # ... while the class layer learned
    assert not torch.equal(state["head.weight"], torch.zeros_like(state["head.weight"]))
    unfrozen = replace(cfg, run=RunConfig(out=tmp_path / "cam2", device="cpu"), model=replace(cfg.model, freeze_backbone=False))
    cam.run(unfrozen)
    state2 = load_checkpoint(tmp_path / "cam2" / "classifier" / "final.pt")["model"]
    assert any(not torch.equal(state2[f"backbone.{k}"].float(), v.float()) for k, v in before.items())


def test_frozen_random_backbone_is_refused(tmp_path, train_data):
    with pytest.raises(OptionError, match="--freeze-backbone needs pretrained"):
        cam.CamConfig(run=RunConfig(out=tmp_path), data=train_data, model=ClassifierConfig("tiny", "none", freeze_backbone=True))


def test_warmup_as_a_share_of_the_run():
    assert warmup_length(200, 0.0, 186) == 200
    assert warmup_length(200, 0.05, 186) == 10  # ceil(9.3)
    assert warmup_length(0, 0.04, 4600) == 184
    sched = Schedule(0.01, 62, warmup_length(200, 0.05, 186), 3.0)
    assert sched.lr(9) == pytest.approx(0.01) and sched.lr(4) == pytest.approx(0.005)


@pytest.mark.parametrize("text,expected", [("200", (200, 0.0)), ("5%", (0, 0.05)), (" 0 ", (0, 0.0)), ("50%", (0, 0.5))])
def test_parse_warmup(text, expected):
    parsed = warmup(text)  # the --warmup parser every training command uses
    assert parsed["warmup_iters"] == expected[0] and parsed["warmup_fraction"] == pytest.approx(expected[1])


@pytest.mark.parametrize("text", ["five", "5.5", "%"])
def test_parse_warmup_refuses_what_is_not_a_warmup(text):
    with pytest.raises(OptionTextError, match="takes iterations"):
        warmup(text)


@pytest.mark.parametrize("text,message", [("-1", "--warmup must be an integer >= 0"), ("60%", "--warmup must be .* <= 0.5")])
def test_warmups_out_of_range_are_refused_by_the_config(text, message):
    # the parser only reads the text; the range is the config's, so the Python API refuses the same
    with pytest.raises(OptionError, match=message):
        OptimConfig(**warmup(text))
