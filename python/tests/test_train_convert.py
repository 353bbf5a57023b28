"""Training is deterministic, and origin-style checkpoints convert to the same SavedModel."""
import subprocess
import sys

import numpy as np
import pytest

from dkt import convert, data, export

from conftest import ROOT


def train(tmp_path, name, *extra):
    out = tmp_path / name
    subprocess.run([sys.executable, "-m", "dkt.train", "--train", str(ROOT / "data/assistments/builder_train.csv"),
                    "--test", str(ROOT / "data/assistments/builder_test.csv"), "--out", str(out),
                    "--limit", "40", "--epochs", "1", "--hidden", "16", *extra],
                   cwd=ROOT / "python", check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def students(test_split):
    return data.read_dkt3(test_split)[:12]


def predict(model_dir, students):
    predictor = export.Predictor(str(model_dir))
    try:
        return predictor.predict(data.pad_batch(students, 124))
    finally:
        predictor.close()


def test_training_is_deterministic(tmp_path, students):
    first = predict(train(tmp_path, "a"), students)
    second = predict(train(tmp_path, "b"), students)
    assert np.array_equal(first, second)


def test_checkpoint_converts_to_identical_savedmodel(tmp_path, students):
    ckpt = tmp_path / "ckpt"
    exported = train(tmp_path, "exported", "--scope", "test/dkt", "--checkpoint", str(ckpt))
    converted = tmp_path / "converted"
    subprocess.run([sys.executable, "-m", "dkt.convert", "--checkpoint", str(ckpt), "--prefix", "test/dkt",
                    "--out", str(converted)], cwd=ROOT / "python", check=True, capture_output=True)
    assert np.array_equal(predict(exported, students), predict(converted, students))


def test_convert_names_a_missing_checkpoint(tmp_path):
    with pytest.raises(convert.ConvertError, match="no checkpoint found"):
        convert.convert(str(tmp_path), "test/dkt", str(tmp_path / "out"))


def test_convert_names_a_wrong_prefix(tmp_path):
    ckpt = tmp_path / "ckpt"
    train(tmp_path, "m", "--scope", "test/dkt", "--checkpoint", str(ckpt))
    with pytest.raises(convert.ConvertError, match="check --prefix"):
        convert.convert(str(ckpt), "other/scope", str(tmp_path / "out"))
