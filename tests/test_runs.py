"""Trustworthy runs: the run directory, --set, --resume, divergence, start-up checks, one-line errors
and status lines, mostly through the command line (tools/train.py, tools/extract_mesh.py)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from _helpers import ROOT, TINY, demo_config, tiny_scene

from sdfseg.data.scene import decode_normals
from sdfseg.errors import SdfsegError
from sdfseg.training.pipeline import run as run_pipeline
from sdfseg.training.rundir import RunLock
from sdfseg.training.trainer import Trainer

FAST = TINY + ["render.chunk=512", "render.export_mesh=false", "train.segmentation_start=0",
               "train.checkpoint_every=1"]


def train_cli(*args, timeout=300):
    return subprocess.run([sys.executable, str(ROOT / "tools" / "train.py"), *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def one_line_error(r, *needles):
    assert r.returncode == 2, r.stderr
    err = r.stderr.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    for n in needles:
        assert n in err, err
    return err


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return tiny_scene(tmp_path_factory.mktemp("runs") / "scene")


def sets(scene, run_dir, *extra):
    return ["--set", *FAST, f"data.path={scene}", f"run.dir={run_dir}", "train.iterations=3", *extra]


@pytest.fixture(scope="module")
def finished(scene, tmp_path_factory):
    """A finished 3-iteration run made by the command line (copy it before changing it)."""
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    r = train_cli("confs/demo.yaml", *sets(scene, run_dir), "--no-progress")
    assert r.returncode == 0, r.stderr
    return run_dir, r.stdout


def copy_run(src, dst):
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".lock"))
    return dst


# ---- 1. repeated --set ------------------------------------------------------------------------------
def test_repeated_set_accumulates_in_every_tool(finished, scene, tmp_path):
    run_dir, _ = finished
    cfg = json.loads(json.dumps(__import__("yaml").safe_load((run_dir / "config.yaml").read_text())))
    assert cfg["run"]["dir"] == str(run_dir) and cfg["train"]["iterations"] == 3  # two --set groups, both kept
    for tool in ("train.py", "benchmark.py", "table2.py"):
        for order in (["train.nope=1", "train.iterations=2"], ["train.iterations=2", "train.nope=1"]):
            r = subprocess.run([sys.executable, str(ROOT / "tools" / tool), "confs/demo.yaml",
                                "--set", order[0], "--set", order[1]], cwd=ROOT, capture_output=True, text=True)
            one_line_error(r, "train.nope")  # the unknown key is seen whether it came first or last


# ---- 2. divergence ------------------------------------------------------------------------------------
def test_divergence_stops_with_one_line_error_and_writes_nothing(scene, tmp_path):
    run_dir = tmp_path / "run"
    r = train_cli("confs/demo.yaml", *sets(scene, run_dir, "train.iterations=40", "train.lr=1e6"), "--no-progress")
    err = one_line_error(r, "training diverged", "step", "non-finite")
    assert "eikonal" in err or "gradient" in err
    assert "step skipped" in r.stdout
    assert_finite_checkpoint(run_dir)
    assert not (run_dir / "metrics.json").exists() and not (run_dir / "test").exists()


def assert_finite_checkpoint(run_dir):
    """A checkpoint written before training diverged, if any, holds finite weights."""
    ckpt = run_dir / "checkpoints" / "last.pt"
    model = torch.load(ckpt, weights_only=True)["model"] if ckpt.exists() else {}
    assert all(torch.isfinite(v).all() for v in model.values() if isinstance(v, torch.Tensor))


def _nan_normals(scene_dir, run_dir, frames, *extra):
    cfg = demo_config(FAST + ["loss.normal_l1=0.05", "loss.normal_cos=0.05", "train.iterations=12",
                              "train.max_bad_steps=3"], scene_dir, run_dir, *extra)
    trainer = Trainer(cfg)
    normals = decode_normals(trainer.scene.normals)  # float32: the sampler takes float normals too
    normals[frames] = np.nan
    trainer = Trainer(cfg, scene=trainer.scene.replace(normals=normals))
    return trainer


def test_nan_normals_name_the_loss_term_and_no_checkpoint(scene, tmp_path):
    trainer = _nan_normals(scene, tmp_path / "r", slice(None))
    with pytest.raises(SdfsegError, match=r"from step 0 on, 4 steps in a row had a non-finite loss term \(normal\)"):
        trainer.fit(progress=False)
    assert trainer.skipped_steps == 4
    assert_finite_checkpoint(tmp_path / "r")


def test_a_bad_step_is_skipped_and_training_goes_on(scene, tmp_path):
    trainer = _nan_normals(scene, tmp_path / "r", [0], "train.max_bad_steps=100", "train.replace_prob=0")
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.fit(progress=False)
    assert trainer.step == 12 and 0 < trainer.skipped_steps < 12
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))
    state = torch.load(tmp_path / "r" / "checkpoints" / "last.pt", weights_only=True)
    assert state["skipped_steps"] == trainer.skipped_steps


def test_no_checkpoint_or_metrics_from_non_finite_weights(scene, tmp_path):
    trainer = Trainer(demo_config(FAST + ["train.iterations=1"], scene, tmp_path / "r"))
    trainer.fit(progress=False)
    with torch.no_grad():
        next(trainer.model.parameters())[0] = float("nan")
    stamp = (tmp_path / "r" / "checkpoints" / "last.pt").stat().st_mtime_ns
    with pytest.raises(SdfsegError, match="non-finite weights"):
        trainer.save_checkpoint()
    assert (tmp_path / "r" / "checkpoints" / "last.pt").stat().st_mtime_ns == stamp
    from sdfseg.training.pipeline import finish

    with pytest.raises(SdfsegError, match="non-finite weights"):
        finish(trainer, progress=False)
    assert not (tmp_path / "r" / "metrics.json").exists() and not (tmp_path / "r" / "test").exists()


# ---- 3. the run directory --------------------------------------------------------------------------------
def test_second_process_is_refused_and_kill_releases_the_lock(scene, tmp_path):
    run_dir = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from sdfseg.training.rundir import RunLock\n"
                               f"with RunLock({str(run_dir)!r}, 'holder'):\n    print('locked', flush=True); "
                               "time.sleep(120)"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        r = train_cli("confs/demo.yaml", *sets(scene, run_dir))
        one_line_error(r, "in use by pid", str(holder.pid), "holder")
        assert not (run_dir / "config.yaml").exists()
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    (run_dir / "checkpoints").mkdir()
    stale = run_dir / "checkpoints" / ".last.k1ll3d_x.tmp.pt"  # what a kill during a checkpoint leaves
    stale.write_bytes(b"partial")
    with RunLock(run_dir, "test"):  # the killed holder's lock died with it
        assert not stale.exists()


def test_fresh_run_needs_overwrite_which_clears_stale_outputs(finished, scene, tmp_path):
    run_dir = copy_run(finished[0], tmp_path / "run")
    (run_dir / "meshes").mkdir(exist_ok=True)
    (run_dir / "meshes" / "object_099.ply").write_text("stale")
    before = (run_dir / "config.yaml").read_bytes()
    r = train_cli("confs/demo.yaml", *sets(scene, run_dir, "train.seed=1"))
    one_line_error(r, "already holds a run", "--overwrite", "--resume")
    assert (run_dir / "config.yaml").read_bytes() == before
    r = train_cli("confs/demo.yaml", *sets(scene, run_dir, "train.seed=1"), "--overwrite", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert not (run_dir / "meshes").exists()  # this run exports none: the old meshes are gone
    assert "seed: 1" in (run_dir / "config.yaml").read_text()


# ---- 4. and 5. --resume -------------------------------------------------------------------------------------
def test_failed_resume_leaves_the_run_untouched(finished, scene, tmp_path):
    run_dir = copy_run(finished[0], tmp_path / "run")
    files = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file() and p.name != ".lock"}
    r = train_cli(run_dir / "config.yaml", "--resume", "--set", "model.num_channels=6")
    one_line_error(r, "--resume", "model.num_channels", "render.*")
    r = train_cli(run_dir / "config.yaml", "--resume", "--set", "train.iterations=5")
    one_line_error(r, "train.iterations")
    (run_dir / "config.yaml").write_text((run_dir / "config.yaml").read_text().replace("num_channels: 5",
                                                                                     "num_channels: 6"))
    r = train_cli(run_dir / "config.yaml", "--resume")  # config and checkpoint disagree: caught before writing
    one_line_error(r, "last.pt", "SDF channels")
    files[run_dir / "config.yaml"] = (run_dir / "config.yaml").read_bytes()
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file() and p.name != ".lock"} == files


def test_resume_of_a_finished_run_renders_identical_maps(finished, tmp_path):
    run_dir = copy_run(finished[0], tmp_path / "run")
    before = {p.relative_to(run_dir): p.read_bytes() for p in (run_dir / "test").rglob("*.png")}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics.pop("pred_dir")
    r = train_cli(run_dir / "config.yaml", "--resume", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "already trained (3 iterations)" in r.stdout
    after = {p.relative_to(run_dir): p.read_bytes() for p in (run_dir / "test").rglob("*.png")}
    assert len(before) == 10 and after == before
    again = json.loads((run_dir / "metrics.json").read_text())
    assert again.pop("pred_dir") == str(run_dir / "test") and again == metrics
    r = train_cli(run_dir / "config.yaml", "--resume", "--no-progress", "--set", "render.vote_grid=0",
                  "render.split_grid=0")  # the split step follows the vote
    assert r.returncode == 0, r.stderr  # re-rendering with other render.* keys is allowed and recorded
    assert "vote_grid: 0" in (run_dir / "config.yaml").read_text() and not (run_dir / "ownership.npz").exists()


# ---- 6. start-up checks ---------------------------------------------------------------------------------
def test_empty_test_split_and_bad_values_fail_before_training(scene, tmp_path):
    no_test = tmp_path / "scene"
    shutil.copytree(scene, no_test)
    split = json.loads((no_test / "splits.json").read_text())
    (no_test / "splits.json").write_text(json.dumps({"train": split["train"] + split["test"], "test": []}))
    r = train_cli("confs/demo.yaml", *sets(no_test, tmp_path / "a"))
    one_line_error(r, "test split is empty")
    assert not (tmp_path / "a").exists()  # a run that stopped before writing leaves no folder behind
    for bad, key in (("train.checkpoint_every=0", "train.checkpoint_every"), ("train.lr=-1", "train.lr"),
                     ("train.log_every=0", "train.log_every"), ("loss.rgb=-1", "loss.rgb")):
        r = train_cli("confs/demo.yaml", *sets(scene, tmp_path / "b", bad))
        one_line_error(r, key)
        assert not (tmp_path / "b").exists()


# ---- 7. one-line errors ---------------------------------------------------------------------------------
def test_unreadable_inputs_and_outputs_are_one_line_errors(finished, scene, tmp_path):
    run_dir = copy_run(finished[0], tmp_path / "run")
    (run_dir / "checkpoints" / "last.pt").write_bytes(np.random.default_rng(0).bytes(3000))
    r = train_cli(run_dir / "config.yaml", "--resume")
    one_line_error(r, "last.pt", "not a readable sdfseg checkpoint")
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "extract_mesh.py"), str(run_dir)], cwd=ROOT,
                       capture_output=True, text=True)
    one_line_error(r, "last.pt", "not a readable sdfseg checkpoint")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(bytes(range(256)) * 4)
    one_line_error(train_cli(binary), "binary.yaml", "not a text file")
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    one_line_error(train_cli("confs/demo.yaml", *sets(scene, blocker / "run")), "a_file")
    good = copy_run(finished[0], tmp_path / "good")
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "extract_mesh.py"), str(good), "--resolution", "16",
                        "--out", str(blocker / "meshes"), "--no-progress"], cwd=ROOT, capture_output=True, text=True)
    one_line_error(r, "a_file")
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "evaluate.py"), str(scene), str(good / "test"), "--json",
                        str(blocker / "m.json")], cwd=ROOT, capture_output=True, text=True)
    one_line_error(r, "a_file")


def test_extract_mesh_formats_and_index(finished, tmp_path):
    """--format ply glb, --points: objects.json lists exactly the object files, the GLB has one node per
    object and the room; a format it cannot write is a one-line error."""
    import trimesh

    run_dir = copy_run(finished[0], tmp_path / "run")
    out = tmp_path / "meshes"
    tool = [sys.executable, str(ROOT / "tools" / "extract_mesh.py"), str(run_dir), "--resolution", "24", "--no-progress"]
    r = subprocess.run(tool + ["--format", "ply", "glb", "--points", "32", "--out", str(out)], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    index = json.loads((out / "objects.json").read_text())
    channels = json.loads((run_dir / "channels.json").read_text())["channels"]
    assert [row["id"] for row in index["objects"]] == sorted({c["instance_id"] for c in channels if c["object"]})
    assert sorted(p.name for p in out.glob("object_*.ply")) == sorted(row["files"]["ply"] for row in index["objects"])
    scene = trimesh.load(out / "scene.glb")
    assert set(scene.graph.nodes_geometry) == {row["name"] for row in index["objects"]} | {"background"}
    one_line_error(subprocess.run(tool + ["--format", "stl"], cwd=ROOT, capture_output=True, text=True),
                   "--format", "ply, glb, obj")


# ---- 8. status lines ----------------------------------------------------------------------------------
def test_no_progress_prints_status_lines_and_no_bars(finished):
    out = finished[1]
    assert "\r" not in out
    train_line = [ln for ln in out.splitlines() if ln.startswith("train: 3/3")]
    assert train_line and all(w in train_line[0] for w in ("loss", "psnr", "it/s"))
    assert any(ln.startswith("render test views: 2/2") for ln in out.splitlines())


def test_status_line_has_eta_while_running():
    from sdfseg.progress import Progress

    p = Progress(100, "train", enabled=False, interval=1e9)
    p.t0 -= 10.0  # ten seconds ago
    p.update(25, loss=0.5, psnr=20.0)
    line = p.line()
    assert line.startswith("train: 25/100 loss 0.5 psnr 20 | 2.50 it/s, eta 30s"), line


def test_pipeline_run_refuses_resume_without_a_run(scene, tmp_path):
    cfg = demo_config(FAST, scene, tmp_path / "nothing")
    with pytest.raises(SdfsegError, match="nothing to resume"):
        run_pipeline(cfg, resume=True, progress=False)
    assert not (tmp_path / "nothing" / "config.yaml").exists()


def test_kill_then_resume_matches_uninterrupted(scene, tmp_path):
    """kill -9 during training, then --resume: the same weights as an uninterrupted run."""
    straight = tmp_path / "straight"
    r = train_cli("confs/demo.yaml", *sets(scene, straight, "train.iterations=150"), "--no-progress")
    assert r.returncode == 0, r.stderr
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(ROOT / "tools" / "train.py"), "confs/demo.yaml",
                             *sets(scene, killed, "train.iterations=150"), "--no-progress"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = killed / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    while time.time() < deadline and not (ckpt.exists() and torch.load(ckpt, weights_only=True)["step"] >= 5):
        time.sleep(0.02)  # checkpoints are replaced atomically: a read never sees half a file
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step = torch.load(ckpt, weights_only=True)["step"]
    assert 0 < step < 150, "the run finished before it could be killed"
    r = train_cli(killed / "config.yaml", "--resume", "--no-progress")
    assert r.returncode == 0, r.stderr
    a = torch.load(straight / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(ckpt, weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else a[k] == b[k] for k in a)
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (straight, killed))
    assert ma.pop("pred_dir") != mb.pop("pred_dir") and ma == mb
