import json
import shutil
from pathlib import Path

import pytest

EXAMPLE_RECORD = Path(__file__).resolve().parents[2] / "fixtures" / "records" / "run-v1.json"


@pytest.fixture(autouse=True)
def _clean_signing_env(clean_signing_env):
    return None


@pytest.fixture
def example_state(tmp_path: Path) -> Path:
    """A state directory holding the example run record as its latest run."""
    runs = tmp_path / "runs"
    runs.mkdir()
    run_id = json.loads(EXAMPLE_RECORD.read_text())["run_id"]
    shutil.copy(EXAMPLE_RECORD, runs / f"{run_id}.json")
    (tmp_path / "latest").write_text(run_id + "\n")
    return tmp_path
