"""Every config key can be found: ``faceforge config`` lists them all with value, type, range and
help; a misspelt key or backbone names the closest real ones; recipes are found by name."""

from __future__ import annotations

import dataclasses
import json
import typing

import pytest

from faceforge.cli.main import main
from faceforge.config import (
    ExperimentConfig,
    closest_keys,
    config_keys,
    describe,
    load_config,
    recipes,
    resolve_config,
)
from faceforge.errors import UserError
from faceforge.train.components import backbone_suggestions, check_components


def _sections(cls=ExperimentConfig):
    yield cls
    for f in dataclasses.fields(cls):
        tp = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(tp):
            yield from _sections(tp)


def test_every_declared_key_has_one_line_of_help():
    from faceforge.landmarks.train import LandmarkConfig

    for cls in [*_sections(), *_sections(LandmarkConfig)]:
        own = {f.name for f in dataclasses.fields(cls)
               if not dataclasses.is_dataclass(typing.get_type_hints(cls)[f.name])}
        missing = own - set(getattr(cls, "HELP", {}))
        assert not missing, f"{cls.__name__}: no help for {sorted(missing)}"
        assert all("\n" not in h and h for h in cls.HELP.values())


def test_describe_gives_value_type_and_range():
    rows = {r["key"]: r for r in describe(load_config(None, ["train.max_steps=50"]))}
    assert set(rows) == set(config_keys())
    assert rows["train.max_steps"]["value"] == 50
    assert rows["train.max_steps"]["type"] == "int" and rows["train.max_steps"]["range"] == ">= 0"
    assert rows["optim.momentum"]["range"] == "in [0, 1)"
    assert "budget" in rows["train.max_minutes"]["help"]


def test_cli_lists_every_key_and_component_options(capsys):
    assert main(["config", "--json", "--set", "head.m=0.45"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    keys = {r["key"]: r for r in rows}
    assert set(config_keys()) <= set(keys)
    assert keys["head.m"]["value"] == 0.45  # the arcface head's option, with its --set value
    assert "train.sample_rate" in keys  # the conventional mode's option
    assert main(["config", "mobilefacenet_arcface"]) == 0
    out = capsys.readouterr().out
    assert "train:" in out and "max_minutes" in out and "wall-clock budget" in out


@pytest.mark.parametrize("key, expected", [
    ("train.steps", "train.max_steps"), ("trian.max_steps", "train.max_steps"),
    ("data.bach_size", "data.batch_size"), ("model.backbon", "model.backbone"),
])
def test_closest_keys_across_sections(key, expected):
    assert closest_keys(key, config_keys()).startswith(f"did you mean '{expected}'")


def test_unknown_key_of_a_component_section_names_the_real_key(capsys):
    # train.* forwards unknown keys to the training mode; before, the message listed the mode's
    # arguments ("valid: backbone, cfg, num_classes, sample_rate")
    with pytest.raises(UserError, match=r"unknown config key 'train.steps'.*did you mean 'train.max_steps'"):
        check_components(load_config(None, ["train.steps=50"]))
    assert main(["train", "--set", "train.steps=50", "--set", "output=/nonexistent/x"]) == 2
    err = capsys.readouterr().err
    assert "'train.max_steps'" in err and "cfg" not in err and err.count("\n") == 1
    with pytest.raises(UserError, match="unknown config key 'data.bach_size'.*'data.batch_size'"):
        load_config(None, ["data.bach_size=3"])


def test_backbone_suggestions_rank_by_name_and_say_size_and_macs():
    msg = backbone_suggestions("tiny")
    first = msg.removeprefix("closest: ").split("), ")[0]
    assert first.startswith("mobilefacenet_tiny (112x112, ") and first.endswith("MACs")
    with pytest.raises(UserError, match=r"model.backbone: unknown backbone 'tiny'; closest: mobilef"):
        check_components(load_config(None, ["model.backbone=tiny"]))
    assert "iresnet" in backbone_suggestions("iresnet").split(",")[0]


def test_recipes_are_found_by_name(tmp_path):
    assert "mobilefacenet_arcface" in recipes()
    assert resolve_config("mobilefacenet_arcface") == recipes()["mobilefacenet_arcface"]
    assert resolve_config("configs/mobilefacenet_arcface.yaml").name == "mobilefacenet_arcface.yaml"
    own = tmp_path / "mobilefacenet_arcface.yaml"
    own.write_text("seed: 3\n")
    assert resolve_config(own) == own  # a path that exists always wins
    with pytest.raises(UserError, match="did you mean 'mobilefacenet_arcface'"):
        resolve_config("mobilefacenet_arcfce")
    assert load_config("r50_cosface").model.backbone == "iresnet50"


def test_landmark_recipe_lists_its_own_keys(capsys):
    assert main(["config", "landmarks_mobilenet", "--set", "train.max_steps=3"]) == 0
    out = capsys.readouterr().out
    assert "crop_scale" in out and "faceforge landmarks train NAME" in out
    assert main(["config", "landmarks_mobilenet", "--set", "data.bogus=1"]) == 2
    assert "unknown config key 'data.bogus'" in capsys.readouterr().err
