"""tools/evaluate.py and sdfseg.eval.report on a tiny Panoptic-Lifting-layout scene."""

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sdfseg.data.scene import ClassInfo, LabelSource, Scene
from sdfseg.errors import SdfsegError
from sdfseg.eval import evaluate_label_source, evaluate_maps, format_table, load_prediction_dir
from sdfseg.io import save_image_atomic, save_label_png

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "evaluate.py"
NAMES = ["f0", "f1", "f2"]
CLASSES = ClassInfo(num_classes=4, thing_ids=(2,), stuff_ids=(1, 3), names=("void", "wall", "chair", "floor"))


def gt_maps():
    """3 frames 8x12: wall, floor on the last two rows, chair id 5 (6 px in f1, 2 px in f2), void corner."""
    sem = np.ones((3, 8, 12), np.int32)
    sem[:, 6:] = 3
    sem[:, 0, 0] = 0
    inst = np.zeros_like(sem)
    for f, (r, c) in ((0, (2, 4)), (1, (2, 3)), (2, (1, 2))):
        sem[f, 2:2 + r, 4:4 + c] = 2
        inst[f, 2:2 + r, 4:4 + c] = 5
    return sem, inst


def m2f_maps():
    """The GT semantics, but the chair gets id 1 in f1 and id 2 in f2 (inconsistent across views)."""
    sem, inst = gt_maps()
    return sem, np.where(inst == 5, np.arange(3)[:, None, None], 0).astype(np.int32)


def make_scene(test=(1, 2)) -> Scene:
    sem, inst = gt_maps()
    msem, minst = m2f_maps()
    return Scene(path=Path("tiny"), frame_names=list(NAMES), rgb=np.zeros((3, 8, 12, 3), np.float32),
                 c2w=np.repeat(np.eye(4, dtype=np.float32)[None], 3, 0),
                 intrinsics=np.repeat(np.eye(3, dtype=np.float32)[None], 3, 0), classes=CLASSES,
                 split={"train": np.array([0]), "test": np.array(test, dtype=np.int64)},
                 labels={"m2f": LabelSource(instance=minst, semantic=msem)},
                 gt=LabelSource(instance=inst, semantic=sem))


def write_pl_scene(root: Path, test=("f1", "f2")) -> Path:
    """Write the same scene in the Panoptic Lifting layout (REFERENCE.md section 6)."""
    sem, inst = gt_maps()
    msem, minst = m2f_maps()
    for i, n in enumerate(NAMES):
        save_image_atomic(root / "color" / f"{n}.png", np.full((8, 12, 3), 0.5, np.float32))
        save_label_png(root / "depth" / f"{n}.png", np.full((8, 12), 1500, np.int32))
        (root / "pose").mkdir(exist_ok=True)
        np.savetxt(root / "pose" / f"{n}.txt", np.eye(4))
        for folder, arr in (("rs_semantics", sem), ("rs_instance", inst), ("m2f_semantics", msem),
                            ("m2f_instance", minst)):
            save_label_png(root / folder / f"{n}.png", arr[i])
    (root / "intrinsic").mkdir()
    np.savetxt(root / "intrinsic" / "intrinsic_color.txt", np.array(
        [[10.0, 0, 6, 0], [0, 10.0, 4, 0], [0, 0, 1, 0], [0, 0, 0, 1]]))
    (root / "splits.json").write_text(json.dumps({"train": ["f0"], "test": list(test)}))
    with open(root / "segmentation_data.pkl", "wb") as fh:
        pickle.dump({"num_semantic_classes": 4, "fg_classes": [2], "bg_classes": [1, 3],
                     "class_names": list(CLASSES.names)}, fh)
    return root


def write_predictions(pred: Path, frames=(1, 2), scale=1) -> Path:
    """Perfect predictions (the GT) for the given frames, optionally upscaled by ``scale``."""
    sem, inst = gt_maps()
    for i in frames:
        up = lambda a: a.repeat(scale, 0).repeat(scale, 1)  # noqa: E731
        save_label_png(pred / "semantic" / f"{NAMES[i]}.png", up(sem[i]))
        save_label_png(pred / "instance" / f"{NAMES[i]}.png", up(inst[i] * 70001))  # RGBA-encoded ids
    return pred


def error_line(stderr: str) -> str:
    """The one ``error: ...`` line of a failed run (progress bars may precede it); asserts it is last."""
    lines = [ln for ln in stderr.replace("\r", "\n").splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], stderr
    return errors[0]


def load_tool():
    from sdfseg.cli import evaluate

    return evaluate


# The baseline (m2f) by hand: chair GT segment 8 px; (chair,1) 6 px -> IoU 0.75 TP; (chair,2) FP.
# chair PQ 0.5, SQ 0.75, RQ 2/3; wall and floor perfect -> means 5/6, 11/12, 8/9.
BASELINE = {"pq": 5 / 6, "sq": 11 / 12, "rq": 8 / 9, "miou": 1.0, "ea": 1.0, "fscore": 2 / 3}


def test_evaluate_maps_on_a_scene_object():
    scene = make_scene()
    sem, inst = gt_maps()
    r = evaluate_maps(scene, sem[1:], inst[1:] + 300)  # one map per test frame
    assert {k: r[k] for k in ("pq", "sq", "rq", "miou", "ea", "fscore")} == \
        {"pq": 1.0, "sq": 1.0, "rq": 1.0, "miou": 1.0, "ea": 1.0, "fscore": 1.0}
    assert r["num_frames"] == 2 and [x["class"] for x in r["per_class"]] == [1, 2, 3]
    b = evaluate_label_source(scene, "m2f")
    assert {k: b[k] for k in BASELINE} == pytest.approx(BASELINE)
    bad = inst.copy()
    bad[0] = 0  # frame f0 is not a test frame: passing all frames picks f1, f2
    assert evaluate_maps(scene, sem, bad)["pq"] == 1.0
    with pytest.raises(SdfsegError, match="no 2D label source 'sam'"):
        evaluate_label_source(scene, "sam")
    with pytest.raises(SdfsegError, match="test split is empty"):
        evaluate_maps(make_scene(test=()), sem[:0], inst[:0])


def test_load_prediction_dir_checks_files(tmp_path):
    scene = make_scene()
    pred = write_predictions(tmp_path / "p", scale=2)  # 16x24 maps are resized to 8x12
    sem, inst = load_prediction_dir(pred, scene)
    assert sem.shape == (2, 8, 12) and inst.max() == 5 * 70001
    save_label_png(pred / "semantic" / "f2.png", np.full((8, 8), 1, np.int32))
    with pytest.raises(SdfsegError, match=r"f2\.png: size 8x8 has another aspect ratio"):
        load_prediction_dir(pred, scene)
    save_label_png(pred / "semantic" / "f2.png", np.full((8, 12), 4, np.int32))
    with pytest.raises(SdfsegError, match=r"f2\.png: unknown semantic class 4"):
        load_prediction_dir(pred, scene)
    (pred / "semantic" / "f2.png").unlink()
    with pytest.raises(SdfsegError, match=r"semantic/f2\.png: missing prediction file"):
        load_prediction_dir(pred, scene)


def test_cli_in_process_json_option_and_errors(tmp_path, monkeypatch, capsys):
    tool = load_tool()
    monkeypatch.setattr(tool, "load_scene", lambda path, layout="auto", options=None: make_scene())
    pred = write_predictions(tmp_path / "pred")
    out = tmp_path / "m" / "metrics.json"
    assert tool.main([str(tmp_path), str(pred), "--json", str(out), "--no-baseline"]) == 0
    rec = json.loads(out.read_text())
    assert rec["pq"] == 1.0 and rec["baseline"] is None and rec["num_frames"] == 2
    assert not (pred / "metrics.json").exists()
    assert "prediction" in capsys.readouterr().out
    (pred / "instance" / "f1.png").unlink()
    with pytest.raises(SystemExit) as exc:
        tool.run_cli(lambda: tool.main([str(tmp_path), str(pred)]))
    err = error_line(capsys.readouterr().err)
    assert exc.value.code == 2 and "instance/f1.png: missing prediction file" in err
    assert not (pred / "metrics.json").exists()
    monkeypatch.setattr(tool, "load_scene", lambda path, layout="auto", options=None: make_scene(test=()))
    with pytest.raises(SystemExit) as exc:
        tool.run_cli(lambda: tool.main([str(tmp_path), str(pred), "--baseline-source", "m2f"]))
    err = error_line(capsys.readouterr().err)
    assert exc.value.code == 2 and "test split is empty" in err
    assert not (pred / "metrics.json").exists()
    with pytest.raises(SystemExit) as exc:
        tool.parse_args(["--help"])
    assert exc.value.code == 0 and "PQ^scene" in capsys.readouterr().out


def test_table_lists_rows_and_classes():
    scene = make_scene()
    sem, inst = gt_maps()
    r = evaluate_maps(scene, sem[1:], inst[1:])
    r["baseline"], r["baseline_source"] = evaluate_label_source(scene, "m2f"), "m2f"
    text = format_table(r)
    pred_line = next(ln for ln in text.splitlines() if ln.startswith("prediction"))
    base_line = next(ln for ln in text.splitlines() if ln.startswith("baseline (m2f)"))
    assert pred_line.split()[1:] == ["100.0"] * 8
    assert base_line.split()[2:] == ["83.3", "91.7", "88.9", "100.0", "100.0", "66.7", "50.0", "100.0"]
    assert any(ln.split()[:3] == ["2", "chair", "thing"] for ln in text.splitlines())


def run(*args):
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_cli_on_a_panoptic_lifting_folder(tmp_path):
    pytest.importorskip("sdfseg.data.formats.panoptic_lifting")
    scene_dir = write_pl_scene(tmp_path / "scene")
    pred = write_predictions(tmp_path / "pred", scale=2)
    res = run(scene_dir, pred)
    assert res.returncode == 0, res.stderr
    assert "baseline (m2f)" in res.stdout
    rec = json.loads((pred / "metrics.json").read_text())
    assert {k: rec[k] for k in ("pq", "sq", "rq", "miou", "ea")} == dict.fromkeys(("pq", "sq", "rq", "miou", "ea"), 1.0)
    assert rec["num_frames"] == 2 and rec["baseline_source"] == "m2f"
    assert {k: rec["baseline"][k] for k in BASELINE} == pytest.approx(BASELINE)
    assert {r["name"] for r in rec["per_class"]} == {"wall", "chair", "floor"}


def test_cli_errors_on_a_panoptic_lifting_folder(tmp_path):
    pytest.importorskip("sdfseg.data.formats.panoptic_lifting")
    scene_dir = write_pl_scene(tmp_path / "scene", test=())
    pred = write_predictions(tmp_path / "pred")
    res = run(scene_dir, pred)
    assert res.returncode == 2, res.stderr
    assert "test split is empty" in error_line(res.stderr) and not (pred / "metrics.json").exists()
    write_pl_scene(tmp_path / "scene2")
    (pred / "semantic" / "f2.png").unlink()
    res = run(tmp_path / "scene2", pred)
    assert res.returncode == 2 and "semantic/f2.png: missing prediction file" in error_line(res.stderr)
    assert not (pred / "metrics.json").exists()
