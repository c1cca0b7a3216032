import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_models"
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/oracle.py, tests/helpers.py

# Small sizes of the sample models: a step takes milliseconds, so a profile takes seconds.
SMALL = {
    "mlp": ["--depth", "4", "--width", "128", "--batch", "32", "--steps", "12"],
    "gpt": ["--n-layer", "3", "--width", "64", "--seq-len", "32", "--batch", "4", "--steps", "12"],
    "resnet": ["--width", "8", "--blocks", "2", "--stages", "2", "--image-size", "16", "--batch", "8", "--steps", "12"],
}


@pytest.fixture
def small_args():
    return SMALL


@pytest.fixture(autouse=True)
def _quiet_torch_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "2"))
