"""Per-object exports (sdfseg.export.scene): the objects.json rows on hand-made boxes, the GLB scene (one
node per object, round trip through trimesh), OBJ and point clouds, and colours from a colour field."""

import json

import numpy as np
import pytest
import torch
import trimesh

from sdfseg.errors import SdfsegError
from sdfseg.export.scene import check_formats, node_name, object_record, surface_colors, write_object_exports


def _box(extents, center, rgb):
    m = trimesh.creation.box(extents=extents)
    m.apply_translation(center)
    m.visual.vertex_colors = np.tile(np.r_[rgb, 255], (len(m.vertices), 1)).astype(np.uint8)
    return m


def test_object_record_of_a_box():
    m = _box([2.0, 1.0, 0.5], [1.0, 2.0, 3.0], [200, 10, 10])
    r = object_record(m, 7, 5, "dining chair")
    assert r["name"] == "dining-chair_007" and r["id"] == 7 and r["class"] == 5
    assert np.allclose(r["bbox_min"], [0.0, 1.5, 2.75]) and np.allclose(r["bbox_max"], [2.0, 2.5, 3.25])
    assert np.allclose(r["centroid"], [1.0, 2.0, 3.0])
    assert r["volume"] == pytest.approx(1.0) and r["watertight"]
    assert r["vertices"] == 8 and r["faces"] == 12
    open_box = trimesh.Trimesh(m.vertices, m.faces[:-2], process=False)
    assert object_record(open_box, 1, 1, "x")["volume"] is None  # no volume for an open surface
    assert node_name("", 3) == "object_003"


def test_glb_obj_points_and_index(tmp_path):
    chair = _box([0.4, 0.4, 0.8], [1.0, 0.0, 0.4], [200, 10, 10])
    table = _box([1.2, 0.8, 0.7], [0.0, 0.0, 0.35], [10, 200, 10])
    floor = trimesh.Trimesh([[-2, -2, 0], [2, -2, 0], [2, 2, 0], [-2, 2, 0]], [[0, 1, 2], [0, 2, 3]], process=False)
    index = write_object_exports(tmp_path, {4: chair, 9: table}, {4: (5, "chair"), 9: (7, "table")},
                                 formats=("ply", "glb", "obj"), background=floor, points=64,
                                 extra={"run": "t"}, row_extra={9: {"fscore": 0.5}})
    saved = json.loads((tmp_path / "objects.json").read_text())
    assert saved == json.loads(json.dumps(index)) and saved["run"] == "t"
    assert [r["id"] for r in saved["objects"]] == [4, 9] and saved["objects"][1]["fscore"] == 0.5
    assert saved["objects"][0]["files"] == {"ply": "object_004.ply", "obj": "object_004.obj",
                                            "glb": "scene.glb#chair_004", "points": "points_004.ply"}
    # the GLB: one node per object (named class_id) plus the background, geometry and colours intact
    scene = trimesh.load(tmp_path / "scene.glb")
    nodes = {n: scene.graph[n][1] for n in scene.graph.nodes_geometry}
    assert set(nodes) == {"chair_004", "table_009", "background"}
    got = scene.geometry[nodes["chair_004"]]
    assert np.allclose(np.sort(got.vertices, axis=0), np.sort(chair.vertices, axis=0), atol=1e-6)
    assert (np.asarray(got.visual.vertex_colors)[:, :3] == [200, 10, 10]).all()
    assert scene.geometry[nodes["table_009"]].is_watertight
    # PLY and OBJ read back as the same mesh; the point cloud lies on the box's surface
    for ext in ("ply", "obj"):
        m = trimesh.load(tmp_path / f"object_009.{ext}", process=False)
        assert len(m.faces) == 12 and np.allclose(m.bounds, table.bounds)
    pts = trimesh.load(tmp_path / "points_004.ply")
    assert len(pts.vertices) == 64
    p, (lo, hi) = np.asarray(pts.vertices), chair.bounds
    assert ((p >= lo - 1e-6) & (p <= hi + 1e-6)).all()  # inside the box's bounds and on one of its faces
    assert (np.minimum(np.abs(p - lo), np.abs(p - hi)).min(axis=1) < 1e-6).all()
    with pytest.raises(SdfsegError, match="--format: expected one or more of ply, glb, obj, got stl"):
        check_formats(["stl"])


def test_surface_colors_read_the_colour_field():
    from sdfseg.config import load_config
    from sdfseg.core.model import SceneModel

    torch.manual_seed(0)
    cfg = load_config("confs/demo.yaml", ["model.hidden_dim=16", "model.feature_dim=8", "model.color_hidden_dim=16",
                                          "model.encoding.n_levels=2", "model.encoding.log2_hashmap_size=10"])
    model = SceneModel(cfg, 3)
    with torch.no_grad():  # a colour head that answers a constant: its last layer's bias only
        last = model.color.layers[-1]
        if hasattr(last, "parametrizations"):  # weight norm: a zero magnitude is a zero weight
            last.parametrizations.weight.original0.zero_()
        else:
            last.weight.zero_()
        last.bias.copy_(torch.tensor([2.0, 0.0, -2.0]))
    pts = np.random.default_rng(0).uniform(-0.5, 0.5, (50, 3)).astype(np.float32)
    cols = surface_colors(model, pts, chunk=16)
    expect = (255 * torch.sigmoid(torch.tensor([2.0, 0.0, -2.0])).numpy() + 0.5).astype(np.uint8)  # 224 128 30
    assert cols.shape == (50, 3) and cols.dtype == np.uint8
    assert (np.abs(cols.astype(int) - expect.astype(int)) <= 1).all()
