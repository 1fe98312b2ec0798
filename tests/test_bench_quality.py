"""The quality benchmark (tools/bench_quality.py): table, mean and worst, reuse of finished runs,
resume and overwrite choices, refusal of a folder made with other settings."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from _helpers import ROOT, TINY

from sdfseg.apps.quality_bench import (
    check_settings, format_per_class, format_table, per_class, room_overrides, run_command, summarize,
)
from sdfseg.errors import SdfsegError


def test_mean_and_worst_per_column():
    rows = {"a": {"pq": 80.0, "sq": 80.0, "rq": 100.0, "miou": 70.0, "ea": 20.0, "mesh_f": None, "psnr": 21.0,
                  "depth_20cm": 10.0, "noisy_pq": 40.0, "noisy_miou": 60.0, "noisy_ea": 30.0},
            "b": {"pq": 60.0, "sq": 75.0, "rq": 80.0, "miou": 74.0, "ea": 30.0, "mesh_f": 0.5, "psnr": 19.0,
                  "depth_20cm": 30.0, "noisy_pq": 45.0, "noisy_miou": 62.0, "noisy_ea": 25.0}}
    s = summarize(rows)
    assert s["mean"]["pq"] == 70.0 and s["worst"]["pq"] == 60.0 and s["worst"]["miou"] == 70.0
    assert s["mean"]["mesh_f"] == 0.5 and s["worst"]["noisy_ea"] == 25.0
    assert s["worst"]["psnr"] == 19.0 and s["worst"]["depth_20cm"] == 30.0  # the depth error's worst is its highest
    table = format_table(rows, s)
    assert "| **mean** | 70.0 | 77.5 | 90.0 | 72.0 | 25.0 | 0.5 | 20.0 | 20.0 | 42.5 | 61.0 | 27.5 |" in table
    assert "| a | 80.0 | 80.0 | 100.0 | 70.0 | 20.0 | - | 21.0 | 10.0 |" in table


def test_per_class_iou_over_runs(tmp_path):
    """Door counts in both runs (IoU 0.0 and 0.5: mean 25.0, one run at 0), the ceiling in one; the noisy
    labels' IoU is averaged over the runs that count the class for them."""
    def run(name, pred, noisy):
        d = tmp_path / name
        d.mkdir()
        rows = lambda cs: [{"name": n, "thing": n == "chair", "iou": v} for n, v in cs]  # noqa: E731
        (d / "metrics.json").write_text(json.dumps({"per_class": rows(pred), "baseline": {"per_class": rows(noisy)}}))
        return d

    a = run("a", [("door", 0.0), ("chair", 0.6)], [("door", 0.8), ("chair", 0.5)])
    b = run("b", [("door", 0.5), ("ceiling", 1.0)], [("door", 0.9)])
    (b / "metrics.json").write_text((b / "metrics.json").read_text().replace('"thing": false', '"thing": true', 1))
    c = per_class([a, b])
    assert list(c) == ["ceiling", "chair", "door"]
    assert c["door"] == {"kind": "thing/stuff", "iou": 25.0, "runs": 2, "zero": 1, "noisy_iou": 85.0,
                         "noisy_runs": 2}  # run b calls the door a thing (as the demo's table is one)
    assert c["ceiling"]["noisy_iou"] is None and c["chair"]["kind"] == "thing" and c["chair"]["iou"] == 60.0
    assert c["ceiling"]["kind"] == "stuff"
    assert "| door | thing/stuff | 25.0 | 2 | 1 | 85.0 |" in format_per_class(c)


def test_run_command_resumes_or_replaces(tmp_path):
    run = tmp_path / "run"
    assert "--resume" not in run_command(ROOT / "c.yaml", tmp_path, run, 0, []) and \
        "--overwrite" not in run_command(ROOT / "c.yaml", tmp_path, run, 0, [])
    run.mkdir()
    (run / "config.yaml").write_text("x")  # died before its first checkpoint
    assert run_command(ROOT / "c.yaml", tmp_path, run, 0, [])[-1] == "--overwrite"
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.pt").write_bytes(b"")
    cmd = run_command(ROOT / "c.yaml", tmp_path, run, 1, ["a.b=1"])
    assert cmd[-1] == "--resume" and "train.seed=1" in cmd and "a.b=1" in cmd


def test_folder_with_other_settings_is_refused(tmp_path):
    check_settings(tmp_path, {"config": "x", "overrides": ["a=1"]})
    check_settings(tmp_path, {"config": "x", "overrides": ["a=1"]})
    with pytest.raises(SdfsegError, match="other settings"):
        check_settings(tmp_path, {"config": "x", "overrides": ["a=2"]})


def test_cli_trains_then_reuses(tmp_path):
    sets = ["--set", *TINY, "train.iterations=2", "render.mesh_resolution=24", "render.chunk=8192"]
    cmd = [sys.executable, str(ROOT / "tools" / "bench_quality.py"), "--tier", "screen", "--scenes", "demo",
           "--root", str(tmp_path / "bench"), "--data", str(tmp_path / "data"), "--jobs", "1", *sets]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "| demo, seed 0 |" in r.stdout and "| **worst** |" in r.stdout and "1 runs trained" in r.stdout
    assert "| 39.1 | 60.9 | 34.1 |" in r.stdout  # the demo's noisy labels, as in the README
    assert (tmp_path / "bench" / "screen" / "table.md").exists()
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "0 runs trained" in again.stdout
    other = subprocess.run(cmd + ["--set", "loss.fg=0.3"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert other.returncode == 2 and "other settings" in other.stderr


def test_rooms_get_at_least_twenty_channels():
    # the demo config's K = 10 is raised for the rooms (up to 11 instances); K = 50 is kept as it is
    assert room_overrides(10) == ["model.num_channels=20"]
    assert room_overrides(20) == []
    assert room_overrides(50) == []


def test_run_commands_use_absolute_paths(tmp_path, monkeypatch):
    """The runs start in the code's folder: relative scene, run and config paths from another working folder
    must not name other folders there (a missing scene would be generated as the demo scene)."""
    from sdfseg.apps.quality_bench import run_command

    monkeypatch.chdir(tmp_path)
    cmd = run_command(Path("confs/x.yaml"), Path("data/bench/room0"), Path("runs/b/full/room0_s0"), 1, [])
    sets = dict(a.split("=", 1) for a in cmd[cmd.index("--set") + 1:])
    assert sets["data.path"] == str(tmp_path / "data" / "bench" / "room0")
    assert sets["run.dir"] == str(tmp_path / "runs" / "b" / "full" / "room0_s0")
    assert cmd[2] == str(tmp_path / "confs" / "x.yaml") and sets["train.seed"] == "1"
