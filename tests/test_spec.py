from __future__ import annotations

import pytest

from xscan.spec import SCHEMA_VERSION, ModelSpec, OperatingPoint, SpecError


def _spec(**kw):
    base = dict(task="detect", class_names=("knife", "firearm"), input_size=(320, 320), arch="x")
    base.update(kw)
    return ModelSpec(**base).validate()


def test_json_round_trip_is_identity():
    s = _spec(
        operating_points=(OperatingPoint("far5", 0.41, target_far=0.05, far=0.049),),
        default_operating_point="far5",
        info={"metrics": {"ap50": 0.8}},
    )
    assert ModelSpec.from_json(s.to_json()) == s
    assert s.alarm_threshold == pytest.approx(0.41)
    assert s.num_classes == 2 and s.in_channels == 3


@pytest.mark.parametrize(
    "kw, field",
    [
        (dict(task="segment"), "task"),
        (dict(class_names=("a", "a")), "class_names"),
        (dict(input_size=(0, 320)), "input_size"),
        (dict(modality="gray"), "mean/std"),
        (dict(std=(0.0, 1.0, 1.0)), "std"),
        (dict(score_threshold=1.5), "score_threshold"),
        (dict(default_operating_point="nope"), "default_operating_point"),
    ],
)
def test_invalid_fields_are_named(kw, field):
    with pytest.raises(SpecError, match=field):
        _spec(**kw)


def test_unknown_and_newer_schema_rejected():
    d = _spec().to_dict()
    with pytest.raises(SpecError, match="unknown field"):
        ModelSpec.from_dict({**d, "colour": 1})
    with pytest.raises(SpecError, match="newer"):
        ModelSpec.from_dict({**d, "schema_version": SCHEMA_VERSION + 1})


def test_tile_max_downscale_travels_and_is_validated():
    s = _spec(tile_max_downscale=8.0)
    assert ModelSpec.from_json(s.to_json()).tile_max_downscale == 8.0
    # Files written before the field existed read with the default policy.
    d = s.to_dict()
    del d["tile_max_downscale"]
    assert ModelSpec.from_dict(d).tile_max_downscale == 2.0
    with pytest.raises(SpecError, match="tile_max_downscale"):
        _spec(tile_max_downscale=0.5)
