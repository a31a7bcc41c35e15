"""Config validation: every kind of user error is reported with its key path and a fix, all at once."""

import subprocess
import sys

import pytest
import yaml

from pipeline.config import PRESETS_DIR, Config, load_config, validate
from pipeline.schema import ConfigError, describe, to_dict


def problems_of(raw: dict) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        validate(raw)
    return exc.value.problems


def test_defaults_validate_and_every_field_is_documented():
    assert isinstance(validate({}), Config)
    rows = describe(Config)
    assert len(rows) > 40
    undocumented = [key for key, _type, _default, help_text in rows if not help_text]
    assert undocumented == []


def test_bundled_presets_validate():
    """Every bundled preset loads, names its experiment after its file, says how to run it, and sets
    only keys whose values survive the round trip through the resolved config."""
    presets = sorted(PRESETS_DIR.glob("*.yaml"))
    assert {p.stem for p in presets} >= {"face_pose", "smoke", "sinusoid"}
    for path in presets:
        raw = yaml.safe_load(path.read_text())
        cfg = load_config(path.stem)  # by bare name, as the docs show
        assert cfg.experiment == path.stem
        assert path.read_text().splitlines()[0].startswith(f"# Run: python -m pipeline run {path.name}")
        resolved = to_dict(cfg)
        for section, values in raw.items():
            if isinstance(values, dict):
                for key, value in values.items():
                    got = resolved[section][key]
                    assert got == value or (isinstance(value, dict) and value.items() <= got.items()), \
                        (path.name, section, key)
        assert validate(resolved) == cfg  # the resolved config is itself a valid config


def test_unknown_key_suggests_spelling():
    (p,) = problems_of({"data": {"nosie": {"std": 1.0}}})
    assert p.startswith("data.nosie: unknown key") and "data.noise" in p


def test_wrong_types_are_not_coerced():
    probs = problems_of({"teacher": {"train": {"epochs": "3", "augment": 1}}, "data": {"n_train": 1.5}})
    assert any(p.startswith("teacher.train.epochs: expected an integer") for p in probs)
    assert any(p.startswith("teacher.train.augment: expected true or false") for p in probs)
    assert any(p.startswith("data.n_train: expected an integer") for p in probs)


def test_out_of_range_and_bad_choice():
    probs = problems_of({"data": {"noise": {"outlier_fraction": 1.5}}, "distill": {"method": "tor_m"}})
    assert any(p.startswith("data.noise.outlier_fraction: 1.5 is out of range") for p in probs)
    assert any(p.startswith("distill.method: 'tor_m' is not a valid choice (did you mean 'tor_mt'?)")
               for p in probs)


def test_contradictions():
    probs = problems_of({"data": {"source": "sinusoid", "n_train": 32}, "distill": {"real_faces": 2},
                         "export": {"formats": ["onnx_fp32", "onnx_fp32", "pdf"]}})
    assert any(p.startswith("distill.real_faces: data.source 'sinusoid' has no face crop spec") for p in probs)
    assert any(p.startswith("teacher.arch: 'cnn_l' takes image inputs") for p in probs)
    assert any(p.startswith("distill.arch: 'mobile_s' takes image inputs") for p in probs)
    assert any(p.startswith("export.formats[2]: unknown format 'pdf'") for p in probs)
    assert any("listed twice" in p for p in probs)
    assert any(p.startswith("teacher.train.batch_size (128) exceeds data.n_train (32)") for p in probs)


def test_all_problems_reported_together():
    probs = problems_of({"bogus": 1, "data": {"n_val": -1}, "teacher": {"arch": "vgg"},
                         "qat": {"freeze_bn_epoch": 3}})
    assert len(probs) == 4  # unknown key, range, choice, and the contradiction alongside them
    assert any(p.startswith("qat.freeze_bn_epoch (3) is after") for p in probs)


def test_overrides_are_parsed_as_yaml():
    cfg = load_config("smoke.yaml", ["distill.tor.k=2.5", "export.formats=[onnx_fp32]", "teacher.train.epochs=1"])
    assert cfg.distill.tor.k == 2.5 and cfg.export.formats == ["onnx_fp32"] and cfg.teacher.train.epochs == 1


def test_cli_user_errors_exit_2_with_one_line_each_and_write_nothing(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  nosie: 1\nteacher:\n  arch: vgg\n")
    out = tmp_path / "runs"
    r = subprocess.run([sys.executable, "-m", "pipeline", "run", str(bad), "--out", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("error: ") for line in lines)
    assert "Traceback" not in r.stderr
    assert not out.exists()
    r = subprocess.run([sys.executable, "-m", "pipeline", "validate", "no_such.yaml"], capture_output=True, text=True)
    assert r.returncode == 2 and "no such config file or bundled preset" in r.stderr
    bad.write_text("data: [unclosed\n")
    r = subprocess.run([sys.executable, "-m", "pipeline", "validate", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2 and "not valid YAML" in r.stderr


def test_setting_one_nested_key_keeps_the_sections_other_defaults():
    cfg = load_config("face_pose.yaml", ["distill.train.epochs=2", "qat.train.epochs=1"])
    default = load_config("face_pose.yaml")
    assert cfg.distill.train.epochs == 2 and cfg.qat.train.epochs == 1
    assert cfg.distill.train.lr == default.distill.train.lr != default.teacher.train.lr
    assert cfg.distill.train.augment is True and cfg.distill.train.frame_jitter == default.distill.train.frame_jitter
    assert default.teacher.train.frame_jitter == 0.0 and cfg.qat.train.lr == default.qat.train.lr
