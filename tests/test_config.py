from __future__ import annotations

import pytest
import yaml

from xscan.config import ConfigError, load_config, save_resolved

CFG = {
    "name": "t",
    "model": {"task": "detect", "class_names": ["knife"], "input_size": [64, 64], "arch": "x"},
    "data": {"train": [{"kind": "synth", "params": {"kind": "baggage"}}]},
    "train": {"epochs": 2},
}


def _write(tmp_path, data):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_load_override_and_resolve(tmp_path):
    p = _write(tmp_path, CFG)
    cfg = load_config(p, ["train.lr=0.01", "model.input_size=[96,128]"])
    assert cfg.train.lr == 0.01 and cfg.train.epochs == 2
    assert cfg.model.input_size == (96, 128)
    assert cfg.data.train[0].kind == "synth"
    out = save_resolved(cfg, tmp_path / "resolved.yaml")
    again = load_config(out)
    assert again.to_dict() == cfg.to_dict()


def test_unknown_key_names_file_and_path(tmp_path):
    p = _write(tmp_path, {**CFG, "train": {"epochz": 3}})
    with pytest.raises(ConfigError, match=r"c\.yaml.*train\.epochz"):
        load_config(p)


def test_wrong_type_and_bad_spec(tmp_path):
    with pytest.raises(ConfigError, match="train.epochs"):
        load_config(_write(tmp_path, {**CFG, "train": {"epochs": "many"}}))
    bad = {**CFG, "model": {**CFG["model"], "task": "segment"}}
    with pytest.raises(ConfigError, match="task"):
        load_config(_write(tmp_path, bad))
