"""tools/query.py and tools/eval_hierarchy.py on a 2-iteration run; 3D segment export on a two-object toy."""

import json
import subprocess
import sys

import numpy as np
import pytest
import trimesh
from _helpers import HEAD, ROOT
from _helpers import TINY as BASE_TINY
from _helpers import demo_config, tiny_scene

from sdfseg.apps.query import export_segments, query_scores
from sdfseg.cli import eval_hierarchy, query
from sdfseg.errors import run_cli
from sdfseg.methods.hierarchy.query import segment_points
from sdfseg.training.trainer import Trainer

TINY = BASE_TINY + ["render.chunk=1024", "train.iterations=2"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("qcli")
    scene = root / "scene"
    tiny_scene(scene)
    out = {}
    for name, extra in (("head", HEAD), ("plain", [])):
        cfg = demo_config(TINY, scene, root / name, *extra)
        Trainer(cfg).fit(progress=False)
        out[name] = root / name
    return out


def _fails(argv, main, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        run_cli(lambda: main(argv))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1
    return err


def test_query_cli_2d_and_3d(runs, tmp_path, capsys):
    out = tmp_path / "q"
    with pytest.raises(SystemExit) as e:
        run_cli(lambda: query.main([str(runs["head"]), "--frame", "0001", "--click", "5", "7", "--click", "20", "30",
                                    "--thresholds", "0.5", "0.95", "--apply-to", "test", "--out", str(out),
                                    "--3d", "--points", "mesh", "--mesh-resolution", "16", "--distances", "0.05", "2.5",
                                    "--min-size", "1"]))
    assert e.value.code == 0
    summary = json.loads((out / "query.json").read_text())
    assert summary["clicks"] == [[5, 7], [20, 30]] and np.asarray(summary["query_features"]).shape == (2, 16)
    assert set(summary["mask_area"]) == {"0001", "0002", "0007"}           # clicked view + the 2 test frames
    for view in ("0001", "0002", "0007"):
        for f in ("rgb.png", "features.png", "score.png", "mask_0.50.png", "overlay_0.95.png"):
            assert (out / view / f).exists()
        a = summary["mask_area"][view]
        assert 0 <= a["0.95"] <= a["0.50"] <= 24 * 32                     # higher threshold -> smaller mask
    assert summary["mask_area"]["0001"]["0.95"] >= 2                        # the clicked pixels score 1
    seg = json.loads((out / "3d" / "segments.json").read_text())
    assert seg["segments"]["2.50"] == [seg["points"]]                       # distance 2.5 > max(1 - cos): one segment
    assert sum(seg["segments"]["0.05"]) <= seg["points"]
    mesh = trimesh.load(out / "3d" / "d2.50" / "segment_000.ply")
    assert len(mesh.vertices) == seg["points"]
    assert (out / "3d" / "selection_0.50.ply").exists()
    assert "error" not in capsys.readouterr().err
    scene_dir = runs["head"].parent / "scene"
    assert query.main([str(runs["head"]), "--pose", str(scene_dir / "pose" / "0003.txt"), "--click", "3", "4",
                       "--thresholds", "0.9", "--out", str(out / "novel")]) == 0
    novel = json.loads((out / "novel" / "query.json").read_text())
    assert novel["view"] == "pose_0003" and (out / "novel" / "pose_0003" / "mask_0.90.png").exists()
    assert query.main([str(runs["head"]), "--3d", "--voxel", "0", "--distances", "2.5", "--min-size", "1",
                       "--out", str(out / "depth")]) == 0
    seg = json.loads((out / "depth" / "3d" / "segments.json").read_text())
    assert seg["source"] == "depth" and seg["segments"]["2.50"] == [seg["points"]] and "selection" not in seg
    assert 0 < seg["points"] <= 2 * 24 * 32 // 4                            # 2 test frames, stride 2


def test_eval_hierarchy_cli(runs, tmp_path, capsys):
    out = tmp_path / "h.json"
    assert eval_hierarchy.main([str(runs["head"]), "--json", str(out), "--names", "tiny head"]) == 0
    stdout = capsys.readouterr().out
    res = json.loads(out.read_text())
    assert [row["name"] for row in res["rows"]] == ["raw 2D masks (sim)", "tiny head"]
    assert res["levels"] == ["part", "object", "group"] and res["queries"] > 0
    for row in res["rows"]:
        for lv in res["levels"]:
            assert 0.0 <= row["miou"][lv] <= 1.0 and 0.0 <= row["nc"][lv] <= 1.0
    assert "raw 2D masks (sim)" in stdout and "tiny head" in stdout


def test_eval_hierarchy_ceiling_row(runs, tmp_path, capsys):
    out = tmp_path / "c.json"
    assert eval_hierarchy.main([str(runs["head"]), "--json", str(out), "--names", "tiny", "--ceiling"]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["name"] for r in rows] == ["raw 2D masks (sim)", "tiny", "ceiling: GT hierarchy, tiny geometry"]
    for lv in ("part", "object", "group"):
        assert 0.0 <= rows[2]["miou"][lv] <= 1.0
    assert "ceiling: GT hierarchy" in capsys.readouterr().out


def test_bad_input_is_one_line_error(runs, capsys):
    head = str(runs["head"])
    assert "no such frame" in _fails([head, "--frame", "nope", "--click", "1", "1"], query.main, capsys)
    assert "outside the 24x32 image" in _fails([head, "--frame", "0001", "--click", "24", "3"], query.main, capsys)
    assert "features.enabled is false" in _fails([str(runs["plain"]), "--frame", "0001", "--click", "1", "1"],
                                                 query.main, capsys)
    assert "--click" in _fails([head, "--frame", "0001"], query.main, capsys)
    assert "features.enabled is false" in _fails([str(runs["plain"])], eval_hierarchy.main, capsys)
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "query.py"), str(runs["head"]) + "_missing",
                        "--frame", "0001", "--click", "1", "1"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1


def test_two_object_toy_segments_and_multi_click(tmp_path):
    """Two touching blobs with orthogonal features: 3D segments, exported files, multi-select scores."""
    rng = np.random.default_rng(0)
    pts = np.concatenate([rng.normal(0, 0.3, (40, 3)), rng.normal(0, 0.3, (60, 3)) + [0.8, 0, 0]])
    feats = np.concatenate([np.tile([1.0, 0, 0], (40, 1)), np.tile([0, 1.0, 0], (60, 1))])
    labels = segment_points(pts, feats, threshold=0.1, k=16)
    np.testing.assert_array_equal(labels, [1] * 40 + [0] * 60)             # largest segment first
    sizes = export_segments(tmp_path, pts * 2.0, None, labels, min_size=50, max_segments=8)
    assert sizes == [60]                                                     # the 40-point blob is below min_size
    cloud = trimesh.load(tmp_path / "segment_000.ply")
    np.testing.assert_allclose(np.sort(cloud.vertices[:, 0]), np.sort(pts[40:, 0] * 2.0), rtol=1e-6)
    assert not (tmp_path / "segment_001.ply").exists() and (tmp_path / "segments.ply").exists()
    scores = query_scores(feats, np.array([[2.0, 0, 0], [0, 0.5, 0.5]]))
    np.testing.assert_allclose(scores[:40], 1.0)                            # first click: own object
    np.testing.assert_allclose(scores[40:], (np.sqrt(0.5) + 1) / 2, rtol=1e-6)  # second click: 45 degrees off
