"""The web viewer (sdfseg.viewer): picking without a browser, then the real thing: the viewer on a tiny
trained run, opened in headless Chromium, a screenshot that shows the objects, a click that the server
sees and the page shows. Skips where viser, playwright or Chromium is missing (.ci/run installs them)."""

import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import trimesh
from _helpers import ROOT, TINY, demo_config, tiny_scene

from sdfseg.export.scene import write_object_exports
from sdfseg.viewer.data import load_view_data, pick, ray_hits, training_cameras


def _box(extents, center, rgb=(128, 128, 128)):
    m = trimesh.creation.box(extents=extents)
    m.apply_translation(center)
    m.visual.vertex_colors = np.tile(np.r_[rgb, 255], (len(m.vertices), 1)).astype(np.uint8)
    return m


def _look_point(cameras) -> np.ndarray:
    """The point closest (least squares) to every camera's optical axis: where the views look."""
    a, b = np.zeros((3, 3)), np.zeros(3)
    for c in cameras:
        o, d = c.c2w[:3, 3], c.c2w[:3, 2] / np.linalg.norm(c.c2w[:3, 2])
        p = np.eye(3) - np.outer(d, d)
        a, b = a + p, b + p @ o
    return np.linalg.solve(a, b)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny trained run (3 iterations) whose meshes are replaced by two boxes at known places where the
    cameras look, on a floor: what the viewer shows is known exactly."""
    from sdfseg.training.pipeline import run as run_pipeline

    root = tmp_path_factory.mktemp("viewer")
    scene = tiny_scene(root / "scene")
    run_dir = root / "run"
    cfg = demo_config(TINY, scene, run_dir, "train.iterations=3", "render.export_mesh=false", "render.chunk=512")
    run_pipeline(cfg, progress=False)
    cams = training_cameras(run_dir)
    up = -np.mean([c.c2w[:3, 1] for c in cams], axis=0)
    up /= np.linalg.norm(up)
    centre = _look_point(cams)
    side = np.cross(up, [1.0, 0.0, 0.0] if abs(up[0]) < 0.9 else [0.0, 1.0, 0.0])
    side /= np.linalg.norm(side)
    boxes = {1: _box([0.5, 0.5, 0.5], centre), 2: _box([0.3, 0.3, 0.3], centre + 0.9 * side)}
    floor = trimesh.Trimesh(centre - 0.25 * up + 2.0 * np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]]),
                            [[0, 1, 2], [0, 2, 3]], process=False)
    if np.dot(floor.face_normals[0], up) < 0:  # the room is drawn one-sided: its front faces up
        floor.invert()
    mesh_dir = run_dir / "meshes"
    mesh_dir.mkdir(exist_ok=True)
    write_object_exports(mesh_dir, boxes, {1: (5, "chair"), 2: (7, "table")}, formats=("ply",))
    floor.export(mesh_dir / "background.ply")
    return run_dir, centre, up


def test_pick_by_ray(run):
    run_dir, centre, _ = run
    up = np.array([0.0, 0.0, 1.0])  # the boxes are axis-aligned; the scene's up is within 3 degrees of +z
    data = load_view_data(run_dir, with_cameras=False)
    assert set(data.objects) == {"chair_001", "table_002"} and data.background is not None
    eye = centre + 3.0 * up
    key, point = pick(data, eye, -up)
    assert key == "chair_001" and np.allclose(point, centre + 0.25 * up, atol=1e-6)  # the box's top face
    key, _ = pick(data, eye, -up, visible={"table_002"})  # hidden: the ray goes on to the floor
    assert key is None
    assert pick(data, eye, up) == (None, None)  # nothing above
    # the room is one-sided: from below the floor, the ray passes it and hits the box's bottom
    assert ray_hits(data.background, centre - 3.0 * up, up, front_only=True) is None
    assert pick(data, centre - 3.0 * up, up)[0] == "chair_001"


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _yellow(img: np.ndarray) -> int:
    """Pixels of the selection highlight (255, 210, 0) as lit in the page (about (245, 232, 140))."""
    r, g, b = (img[..., i].astype(int) for i in range(3))
    return int(((r > 180) & (g > 150) & (b < r - 60) & (b < g - 50)).sum())


def _saturated(img: np.ndarray) -> int:
    return int((img.max(axis=-1).astype(int) - img.min(axis=-1) > 60).sum())


def test_viewer_in_a_browser(run, tmp_path):
    pytest.importorskip("viser")
    pw = pytest.importorskip("playwright.sync_api")
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no Chromium installed (apt-get install chromium)")
    from PIL import Image

    run_dir, _, _ = run
    port = 18000 + os.getpid() % 1000
    log = tmp_path / "viewer.log"
    with open(log, "w") as out:
        server = subprocess.Popen([sys.executable, str(ROOT / "tools" / "view.py"), str(run_dir), "--port", str(port),
                                   "--focus", "1"], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 60
        while "sdfseg viewer: http://127.0.0.1" not in log.read_text():
            assert server.poll() is None and time.time() < deadline, log.read_text()
            time.sleep(0.2)
        with pw.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True,
                                        args=["--enable-unsafe-swiftshader", "--use-angle=swiftshader", "--no-sandbox"])
            page = browser.new_page(viewport={"width": 800, "height": 600})
            page.goto(f"http://127.0.0.1:{port}")
            page.wait_for_selector("canvas", timeout=60000)
            box = page.query_selector("canvas").bounding_box()
            cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2

            def shot(name):
                path = tmp_path / name
                page.screenshot(path=str(path))
                img = np.asarray(Image.open(path).convert("RGB"))
                return img[int(cy) - 150:int(cy) + 150, int(cx) - 150:int(cx) + 150]  # the 3D view's centre

            before = shot("before.png")
            for _ in range(60):  # the meshes arrive over the websocket after the canvas
                if _saturated(before) > 2000:
                    break
                time.sleep(0.5)
                before = shot("before.png")
            assert before.std() > 5, "blank 3D view"
            assert _saturated(before) > 2000, "no object colours in the 3D view"
            assert _yellow(before) < 200
            page.mouse.click(cx, cy)  # --focus 1 puts object 1 at the centre of the screen
            deadline = time.time() + 30
            while "selected chair_001" not in log.read_text():
                assert time.time() < deadline, log.read_text()
                time.sleep(0.2)
            after = shot("after.png")
            for _ in range(20):
                if _yellow(after) > 2000:
                    break
                time.sleep(0.5)
                after = shot("after.png")
            assert _yellow(after) > 2000, "the selection is not highlighted"
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=20)
