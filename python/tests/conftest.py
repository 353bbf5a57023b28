import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest


@pytest.fixture(scope="session")
def test_split():
    return str(ROOT / "data" / "assistments" / "builder_test.csv")


@pytest.fixture(scope="session")
def bundled_model():
    return str(ROOT / "models" / "dkt" / "1")
