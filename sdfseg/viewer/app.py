"""The web viewer of a finished run, on viser (``pip install -e .[viewer]``).

Shows the room and every object's mesh, coloured by object, by class or by appearance (the colour field's
vertex colours); a click in the 3D view selects the object under the cursor (its id, class, size, faces
and, on synthetic scenes, F-score) which can be hidden, isolated or downloaded as PLY / GLB; the
training cameras as frustums; for a run with a feature head, the clicked point's threshold query on the
mesh (a granularity slider from part to group). Selections are printed on stdout (``selected ...``).
"""

from __future__ import annotations

import threading
import time
from typing import Optional

import numpy as np

from ..errors import SdfsegError
from .data import FeatureQuery, ViewData, pick

HIGHLIGHT = (255, 210, 0)
QUERY_COLOR = (255, 40, 200)


def import_viser():
    try:
        import viser
    except ImportError as e:
        raise SdfsegError(f"the viewer needs viser: pip install -e .[viewer] ({e})") from None
    return viser


def scene_frame(data: ViewData) -> tuple[np.ndarray, np.ndarray, float]:
    """Up direction (from the cameras' -y axes; +z without cameras), centre and size of the scene."""
    if data.cameras:
        up = -np.mean([c.c2w[:3, 1] for c in data.cameras], axis=0)
        up = up / max(np.linalg.norm(up), 1e-9)
    else:
        up = np.array([0.0, 0.0, 1.0])
    meshes = [o.mesh for o in data.objects.values()] + ([data.background] if data.background is not None else [])
    pts = np.concatenate([np.asarray(m.bounds) for m in meshes if len(m.vertices)]) if meshes else np.zeros((2, 3))
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    return up, (lo + hi) / 2, float(np.linalg.norm(hi - lo))


def initial_view(data: ViewData, focus: Optional[str] = None) -> dict:
    """Camera ``position``, ``look_at`` and ``up`` that show the scene (or the object ``focus`` at the
    centre of the screen, seen from the side the training cameras saw it from)."""
    up, centre, size = scene_frame(data)
    cams = np.array([c.c2w[:3, 3] for c in data.cameras]) if data.cameras else None
    if focus is not None:
        if focus not in data.objects:
            raise SdfsegError(f"--focus: no object '{focus}' (objects: {', '.join(data.objects)})")
        o = data.objects[focus]
        target = np.asarray(o.mesh.bounds).mean(axis=0)
        side = (cams.mean(axis=0) if cams is not None else target + up + 1.0) - target
        side = side / max(np.linalg.norm(side), 1e-9)
        dist = max(2.5 * float(np.linalg.norm(o.size)), 0.1 * size, 0.5)
        return {"position": target + dist * side, "look_at": target, "up": up}
    if cams is not None:
        back = cams.mean(axis=0) - centre
        back = back - (back @ up) * up
        back = back / max(np.linalg.norm(back), 1e-9)
    else:
        back = np.array([1.0, 0.0, 0.0]) - up[0] * up
        back = back / max(np.linalg.norm(back), 1e-9)
    return {"position": centre + 0.6 * size * back + 0.5 * size * up, "look_at": centre, "up": up}


class Viewer:
    """One viser server showing ``data``; state shared by every connected browser."""

    def __init__(self, data: ViewData, host: str = "127.0.0.1", port: int = 8080, focus: Optional[str] = None,
                 device: Optional[str] = None, log=print):
        viser = import_viser()
        self.data, self.log = data, log
        self.server = viser.ViserServer(host=host, port=port, verbose=False)
        self.lock = threading.Lock()
        self.mode = "object"
        self.hidden: set[str] = set()
        self.selected: Optional[str] = None
        self.handles: dict = {}
        self.query = FeatureQuery(data, device) if data.has_features else None
        self.click_point: Optional[np.ndarray] = None
        self.colors = {"object": data.object_colors(), "class": data.class_colors()}
        view = initial_view(data, focus)
        self.server.scene.set_up_direction(tuple(float(a) for a in view["up"]))
        cam = self.server.initial_camera
        cam.position, cam.look_at, cam.up = (tuple(float(a) for a in view[k]) for k in ("position", "look_at", "up"))
        self._build_scene()
        self._build_gui()
        self.server.scene.on_click()(self._on_click)

    # ---- scene ----------------------------------------------------------------------------------------
    def _add_object(self, key: str) -> None:
        o = self.data.objects[key]
        if key in self.handles:
            self.handles[key].remove()
        name = f"/objects/{key.replace(':', '_')}"
        if self.mode == "appearance" and o.mesh.visual.kind == "vertex":
            h = self.server.scene.add_mesh_trimesh(name, o.mesh)
        else:
            h = self.server.scene.add_mesh_simple(name, np.asarray(o.mesh.vertices, np.float32),
                                                  np.asarray(o.mesh.faces, np.uint32), color=self._colour(key))
        h.visible = key not in self.hidden
        self.handles[key] = h

    def _build_scene(self) -> None:
        bg = self.data.background
        self.bg_handle, self.cam_handles = None, []
        if bg is not None:
            self.bg_handle = self.server.scene.add_mesh_simple(
                "/room", np.asarray(bg.vertices, np.float32), np.asarray(bg.faces, np.uint32), color=(170, 170, 170),
                side="front")  # one-sided: from outside the room, walls and ceiling let the view in
        for key in self.data.objects:
            self._add_object(key)
        import viser.transforms as tf

        for i, c in enumerate(self.data.cameras):
            fy, h, w = c.K[1, 1], c.hw[0], c.hw[1]
            self.cam_handles.append(self.server.scene.add_camera_frustum(
                f"/cameras/{i:04d}", fov=float(2 * np.arctan2(h / 2, fy)), aspect=float(w / h), scale=0.08,
                image=c.image, wxyz=tf.SO3.from_matrix(c.c2w[:3, :3]).wxyz, position=c.c2w[:3, 3], color=(60, 60, 60)))

    def _colour(self, key: str) -> tuple[int, int, int]:
        return HIGHLIGHT if key == self.selected else self.colors["class" if self.mode == "class" else "object"][key]

    def _recolour(self) -> None:
        """Object / class colours and the highlight; in appearance mode the vertex colours show as they are."""
        if self.mode != "appearance":
            for key, h in self.handles.items():
                h.color = self._colour(key)

    # ---- gui ------------------------------------------------------------------------------------------
    def _build_gui(self) -> None:
        gui = self.server.gui
        gui.add_markdown(f"**sdfseg** `{self.data.run_dir.name}`: {len(self.data.objects)} objects")
        modes = ["object", "class"] + (["appearance"] if any(o.mesh.visual.kind == "vertex"
                                                              for o in self.data.objects.values()) else [])
        self.mode_ui = gui.add_dropdown("colour by", tuple(modes), initial_value="object")
        self.mode_ui.on_update(lambda _: self._set_mode(self.mode_ui.value))
        self.room_ui = gui.add_checkbox("room", initial_value=True)
        self.room_ui.on_update(lambda _: self._show_room(self.room_ui.value))
        self.cams_ui = gui.add_checkbox("cameras", initial_value=bool(self.data.cameras))
        self.cams_ui.on_update(lambda _: self._show_cameras(self.cams_ui.value))
        self.info = gui.add_markdown("click an object in the 3D view")
        self.pick_ui = gui.add_dropdown("object", tuple(["-"] + list(self.data.objects)), initial_value="-")
        self.pick_ui.on_update(lambda _: self.select(None if self.pick_ui.value == "-" else self.pick_ui.value))
        row = gui.add_button_group("selection", ("hide", "isolate", "show all"))
        row.on_click(lambda ev: self._selection_action(ev.target.value))
        dl = gui.add_button_group("download", ("PLY", "GLB"))
        dl.on_click(lambda ev: self._download(ev.client, ev.target.value))
        if self.query is not None:
            gui.add_markdown("**feature query**: click a point, then move the slider")
            self.threshold_ui = gui.add_slider("granularity (group .. part)", min=0.5, max=1.0, step=0.01,
                                               initial_value=0.85)
            self.threshold_ui.on_update(lambda _: self._update_query())
        for note in self.data.notes:
            gui.add_markdown(f"_{note}_")

    def _set_mode(self, mode: str) -> None:
        with self.lock:
            previous, self.mode = self.mode, mode
            if "appearance" in (previous, mode):  # another kind of mesh node: add them again
                for key in self.data.objects:
                    self._add_object(key)
            else:
                self._recolour()

    def _show_room(self, on: bool) -> None:
        if self.bg_handle is not None:
            self.bg_handle.visible = on

    def _show_cameras(self, on: bool) -> None:
        for h in self.cam_handles:
            h.visible = on

    def _selection_action(self, action: str) -> None:
        with self.lock:
            if action == "show all":
                self.hidden.clear()
            elif self.selected is None:
                return
            elif action == "hide":
                self.hidden.add(self.selected)
            elif action == "isolate":
                self.hidden = set(self.data.objects) - {self.selected}
            for key, h in self.handles.items():
                h.visible = key not in self.hidden
        self.log(f"{action}: {len(self.data.objects) - len(self.hidden)} objects shown", flush=True)

    def _download(self, client, fmt: str) -> None:
        if self.selected is None or client is None:
            return
        o = self.data.objects[self.selected]
        stem = self.selected.replace(":", "_")
        if fmt == "PLY":
            client.send_file_download(f"{stem}.ply", o.mesh.export(file_type="ply"))
        else:
            from ..export.scene import glb_bytes

            client.send_file_download(f"{stem}.glb", glb_bytes({stem: o.mesh}))

    # ---- selection ------------------------------------------------------------------------------------
    def select(self, key: Optional[str]) -> None:
        with self.lock:
            self.selected = key
            self._recolour()
            self.info.content = "nothing selected (the room)" if key is None else self.data.objects[key].info()
        if key is None:
            self.log("selected nothing (room)", flush=True)
        else:
            o = self.data.objects[key]
            self.log(f"selected {key} (id {o.row['id']}, class {o.row.get('class_name', '')})", flush=True)

    def _on_click(self, event) -> None:
        visible = set(self.data.objects) - self.hidden
        key, point = pick(self.data, event.ray_origin, event.ray_direction, visible,
                          include_background=self.room_ui.value)
        self.click_point = point
        self.select(key)
        if self.query is not None and point is not None:
            self._update_query()

    def _update_query(self) -> None:
        if self.query is None or self.click_point is None:
            return
        pts = self.query.select(self.click_point, float(self.threshold_ui.value))
        self.server.scene.add_point_cloud("/query", pts.astype(np.float32), colors=QUERY_COLOR, point_size=0.01)
        self.log(f"query at {np.round(self.click_point, 3).tolist()}: {len(pts)} vertices at threshold "
                 f"{self.threshold_ui.value:.2f}", flush=True)

    def url(self) -> str:
        return f"http://{self.server.get_host()}:{self.server.get_port()}"

    def stop(self) -> None:
        self.server.stop()


def serve(run_dir, host: str = "127.0.0.1", port: int = 8080, focus: Optional[str] = None,
          device: Optional[str] = None) -> None:
    """Start the viewer on ``run_dir``, print its URL and serve until Ctrl-C."""
    from .data import load_view_data

    t0 = time.perf_counter()
    data = load_view_data(run_dir)
    viewer = Viewer(data, host, port, focus, device)
    print(f"sdfseg viewer: {viewer.url()} ({len(data.objects)} objects, {len(data.cameras)} cameras, "
          f"ready in {time.perf_counter() - t0:.1f} s; Ctrl-C stops)", flush=True)
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        print("viewer stopped", flush=True)
    finally:
        viewer.stop()
