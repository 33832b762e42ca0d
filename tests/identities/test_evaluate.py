"""`streamer identities evaluate DIR`: real crops of real people seen by two real cameras, the
shipped ReID model on a real Triton, calibrated on one half of the people, reported on the other."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streamer.core.assets import ASSETS_ENV_VAR
from tests.conftest import require_asset

pytestmark = pytest.mark.timeout(240)


def evaluate(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, ASSETS_ENV_VAR: str(require_asset("."))}
    return subprocess.run(
        [sys.executable, "-m", "streamer.cli", "identities", "evaluate", *args],
        capture_output=True, text=True, timeout=200, cwd=cwd, env=env,
    )


@pytest.mark.slow
def test_people_walking_between_two_real_cameras_are_linked_without_mixing_anybody(
    tmp_path: Path,
) -> None:
    crops = require_asset("reid/pku-2cam-dev")
    done = evaluate(str(crops), "--json", "--no-curve", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert {"rank1", "map", "linking_precision", "linking_recall"} <= set(report)
    assert set(report["calibration_people"]).isdisjoint(report["report_people"]), "never tuned on"
    assert report["people_on_several_cameras"] == len(report["report_people"]) == 15
    # The target, on people the calibration never saw; before calibration: 0.07 recall.
    assert report["linking_precision"] >= 0.95 and report["linking_recall"] >= 0.6, report
    assert report["uncalibrated"]["linking_recall"] < 0.2
    pair = next(row for row in report["thresholds"] if row["cameras"] == ["c1", "c2"])
    assert pair["confirmed"] > 0 and pair["negatives"] > 0


def test_a_folder_without_crops_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    (tmp_path / "holiday.jpg").write_bytes(b"not a crop name")
    done = evaluate(str(tmp_path), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: {tmp_path}: no crops named PID_cCAM_*.jpg (e.g. 0001_c1_0001.jpg)"
    ]
