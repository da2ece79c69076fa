from pathlib import Path

import pytest
from fakespool import FakeSpool


@pytest.fixture
def spool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeSpool:
    # No test may find a spool through the environment by accident.
    monkeypatch.delenv("JOBD_SPOOL_DIR", raising=False)
    return FakeSpool(tmp_path / "spool")
