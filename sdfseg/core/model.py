"""The scene model: multi-channel SDF + colour + semantic head, rendered along rays.

``SceneModel.render`` is the one hook every method uses: sample points along the
rays, evaluate the fields, and volume-render colour, depth, normals, semantic
logits and the occlusion-aware object opacities ``O [R, K]`` (REFERENCE 1).
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import TYPE_CHECKING, Callable, Optional, Sequence

import torch
from torch import nn

from ..config import Config
from .fields.color import ColorField
from .fields.density import LaplaceDensity
from .fields.encodings import HashGridEncoding
from .fields.feature_head import FeatureHead
from .fields.sdf import MultiChannelSDF
from .render import samplers, volume

if TYPE_CHECKING:
    from .render.surface import SdfGrid

BOUND_RADIUS = 1.0
"""Radius of the bounding sphere rays are clipped to (scenes are normalised to ``data.sphere_radius`` < 1)."""


class _RaiseOnly(torch.autograd.Function):
    """Identity whose backward keeps only the gradient that raises its input under descent (``g < 0``)."""

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        pass

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.clamp(max=0.0)


def uses_sample_grid(cfg: Config, scene) -> bool:
    """Whether training samples rays around the surface of the model's own SDF grid: when
    ``sampler.grid_resolution > 0`` and the rays have no metric sensor depth to sample around, or
    ``sampler.carve_samples > 0`` looks for surfaces in front of the sensor depth."""
    has_depth = cfg.sampler.use_depth and scene.depth is not None and scene.depth_kind == "metric"
    return cfg.sampler.grid_resolution > 0 and (not has_depth or cfg.sampler.carve_samples > 0)


class SceneModel(nn.Module):
    """Fields + renderer.

    Args:
        cfg: experiment config. num_channels: K SDF channels. num_classes: semantic classes
        (incl. void) of the semantic head, or 0 for none. room_channels: channels that start as the
        room enclosing the cameras (default: all in semantic mode, else 1). heads: a method's point
        fields (:meth:`sdfseg.methods.Method.heads`): ``heads[name](geometry feature, x) -> [P, D]``,
        rendered into ``out[name]`` with the scene's weights (detached: a head's loss does not move the surface).
    """

    def __init__(self, cfg: Config, num_channels: int, num_classes: int = 0, sample_grid: bool = False,
                 room_channels: Optional[int] = None, heads: Optional[dict[str, nn.Module]] = None,
                 num_frames: int = 0, train_frames: Optional[Sequence[int]] = None):
        super().__init__()
        m = cfg.model
        self.cfg = cfg
        self.num_channels = num_channels
        self.sdf = MultiChannelSDF(
            num_channels, hidden_dim=m.hidden_dim, n_hidden_layers=m.n_hidden_layers, feature_dim=m.feature_dim,
            encoding=dataclasses.asdict(m.encoding), n_frequencies=m.n_frequencies, weight_norm=m.weight_norm,
            sphere_radius=cfg.data.sphere_radius, object_radius=m.object_radius, inside_out=True,
            room_channels=(num_channels if cfg.train.mode == "semantic" else 1) if room_channels is None
            else room_channels, scene_offsets=m.scene_offsets,
            offsets_detach_trunk=m.offsets_detach_trunk, offset_grid_levels=m.offset_grid_levels,
            offset_grid_max_resolution=m.offset_grid_max_resolution)
        self.appearance: Optional[nn.Embedding] = None
        if m.appearance_dim > 0:
            if num_frames < 1:
                raise ValueError("SceneModel: model.appearance_dim > 0 needs the scene's number of frames")
            self.appearance = nn.Embedding(num_frames, m.appearance_dim)
            nn.init.normal_(self.appearance.weight, std=0.01)
            frames = torch.as_tensor(list(range(num_frames)) if train_frames is None else list(train_frames),
                                     dtype=torch.long)
            self.register_buffer("appearance_frames", frames, persistent=False)
        self.color = ColorField(feature_dim=m.feature_dim + m.appearance_dim, hidden_dim=m.color_hidden_dim,
                                n_layers=m.color_layers, weight_norm=m.weight_norm)
        self.density = LaplaceDensity(beta_init=m.beta_init)
        self.semantic = None
        self.semantic_grid: Optional[HashGridEncoding] = None
        if num_classes > 0:
            in_dim = m.feature_dim
            if m.semantic_grid_levels > 0:
                self.semantic_grid = HashGridEncoding(
                    n_levels=m.semantic_grid_levels, n_features_per_level=2, log2_hashmap_size=15, base_resolution=16,
                    max_resolution=max(m.semantic_grid_max_resolution, 16), bound=BOUND_RADIUS,
                    backend=m.encoding.backend)
                in_dim += self.semantic_grid.out_dim
            self.semantic = nn.Sequential(nn.Linear(in_dim, 64), nn.ReLU(), nn.Linear(64, num_classes))
        s = cfg.sampler
        if s.kind == "error_bounded":
            self.sampler = samplers.ErrorBoundedSampler(n_uniform=s.n_coarse, n_importance=s.n_importance)
        else:
            self.sampler = samplers.HierarchicalSDFSampler(n_coarse=s.n_coarse, n_importance=s.n_importance,
                                                           n_rounds=s.n_rounds)
        self.sample_grid: Optional["SdfGrid"] = None
        if sample_grid:
            from .render.surface import SdfGrid

            self.sample_grid = SdfGrid(s.grid_resolution, BOUND_RADIUS)
        self.features: Optional[FeatureHead] = None
        if cfg.features.enabled:
            f = cfg.features
            # the head is built on the CPU from its own seed and leaves every global random stream alone
            # (fork_rng(devices=[]) restores only the CPU stream, so only the CPU generator is reseeded)
            with torch.random.fork_rng(devices=[]):
                torch.random.default_generator.manual_seed(cfg.train.seed + 1)
                self.features = FeatureHead(m.feature_dim, dim=f.dim, hidden=f.hidden, layers=f.layers,
                                            num_freqs=f.num_freqs, detach_geometry=f.detach_geometry,
                                            grid_levels=f.grid_levels, log2_hashmap_size=f.grid_log2_hashmap_size,
                                            max_resolution=f.grid_max_resolution, backend=m.encoding.backend)
        self.heads = nn.ModuleDict(heads or {})

    @property
    def hash_backend(self) -> str:
        """The backend of the SDF's hash grid (``torch`` | ``tcnn``; ``none`` without a grid)."""
        return self.sdf.grid.backend if self.sdf.grid is not None else "none"

    # ---- parameter groups -------------------------------------------------------------------
    def grid_parameters(self) -> list[nn.Parameter]:
        """Hash-grid tables (trained with the larger grid learning rate)."""
        semantic = list(self.semantic_grid.parameters()) if self.semantic_grid is not None else []
        return self.sdf.grid_parameters() + semantic

    def feature_parameters(self) -> list[nn.Parameter]:
        """MLP parameters of the hierarchical feature head (empty when it is disabled)."""
        return self.features.mlp_parameters() if self.features is not None else []

    def feature_grid_parameters(self) -> list[nn.Parameter]:
        """Hash-grid parameters of the feature head (empty when it is disabled or has no grid)."""
        return self.features.grid_parameters() if self.features is not None else []

    def head_parameters(self) -> list[nn.Parameter]:
        """Parameters of the method's heads (:attr:`heads`; trained in the method's own groups)."""
        return list(self.heads.parameters())

    def other_parameters(self) -> list[nn.Parameter]:
        head = (self.feature_parameters() + self.feature_grid_parameters() + list(self.density.parameters())
                + self.head_parameters())
        skip = {id(p) for p in self.grid_parameters()} | {id(p) for p in head}
        return [p for p in self.parameters() if id(p) not in skip]

    def _object_opacity(self, sigma_min: torch.Tensor, sigma_k: torch.Tensor, dl: torch.Tensor, w: torch.Tensor,
                        sdf: torch.Tensor) -> torch.Tensor:
        """Object opacities ``O [R, K]``.

        ``model.opacity: density`` (reference, ObjectSDF++ eq.): ``O_k = sum_i T_i alpha_{k,i}``.
        ``model.opacity: ownership``: ``O_k = sum_i w_i.detach() softmax_k(-s_{k,i} / tau)``: the scene's
        render weights (detached) split among channels by which channel is closest to owning each
        sample. The softmax still moves channel SDFs, the owner's too (which is the scene's SDF) unless
        ``model.ownership_owner_grad`` says otherwise.
        ``model.detach_occlusion`` detaches the transmittance of the density form.
        """
        m = self.cfg.model
        if m.opacity == "ownership":
            if m.scene_offsets:  # the softmax is shift-invariant: drop the scene SDF's (cancelling) gradient
                s_min = sdf.min(dim=-1, keepdim=True).values
                sdf = sdf - s_min + s_min.detach()
            if m.ownership_owner_grad != "full":  # the owner's SDF is the scene's: segmentation may not pull it out
                owner = sdf == sdf.min(dim=-1, keepdim=True).values
                sdf = torch.where(owner, sdf.detach() if m.ownership_owner_grad == "none" else _RaiseOnly.apply(sdf),
                                  sdf)
            own = torch.softmax(-sdf / self.ownership_tau(), dim=-1)
            return (w.detach()[..., None] * own).sum(dim=1)
        return volume.object_opacity(sigma_min.detach() if m.detach_occlusion else sigma_min, sigma_k, dl)

    # ---- training schedule ---------------------------------------------------------------------
    progress: float = 1.0
    """Training progress in [0, 1] of the step being (or last) trained; part of the state dict, so a
    checkpoint restores the schedule exactly as training left it (:meth:`update_step`)."""

    def update_step(self, step: int, total: int) -> None:
        """Push the trainer's schedule into the model before step ``step`` of ``total`` (annealed beta
        and ownership temperature follow ``progress = step / total``)."""
        self.progress = step / max(1, total)
        g = self.sample_grid
        if g is not None and (not bool(g.valid) or step % self.cfg.sampler.grid_update_every == 0):
            was_training = self.training
            self.eval()
            g.update(self.scene_sdf)
            self.train(was_training)

    def get_extra_state(self) -> dict:
        return {"progress": float(self.progress)}

    def set_extra_state(self, state: dict) -> None:
        self.progress = float(state["progress"])

    def _annealed(self, start: float, final: float) -> float:
        """Geometric schedule from ``start`` (progress 0) to ``final`` (progress 1)."""
        return start * (final / start) ** min(1.0, max(0.0, self.progress))

    def beta(self) -> torch.Tensor:
        """Laplace scale: the learned beta, or the annealed one when ``model.beta_final`` is set
        (geometric from ``beta_init`` to ``beta_final`` over training)."""
        if self.render_beta is not None:
            return torch.tensor(float(self.render_beta), device=self.density.beta.device)
        m = self.cfg.model
        if m.beta_final is None:
            return self.density.beta
        return torch.tensor(self._annealed(m.beta_init, m.beta_final), device=self.density.beta.device)

    def ownership_tau(self) -> float:
        """Temperature of the ownership softmax: ``model.ownership_tau``, annealed geometrically to
        ``model.ownership_tau_final`` over training when that is set."""
        m = self.cfg.model
        if m.ownership_tau_final is None:
            return m.ownership_tau
        return self._annealed(m.ownership_tau, m.ownership_tau_final)

    # ---- fields --------------------------------------------------------------------------------
    channel_edit: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None
    """Inference only: ``(x [P,3], sdf [P,K]) -> sdf`` that re-assigns which channel owns the surface
    without moving it (e.g. :meth:`.ownership.OwnershipGrid.apply`); ``None`` while training."""

    surface_grid: Optional["SdfGrid"] = None
    """Inference only: a :class:`.render.surface.SdfGrid` of the scene SDF; when set, the chunked
    renderer (:mod:`.render.views`) renders surface-first (:func:`.render.surface.surface_render`)
    with :attr:`surface_samples` samples per ray. Not part of the state dict."""
    render_beta: Optional[float] = None
    """Inference only: the density's Laplace scale of the maps rendered after training (``render.beta``;
    set by :meth:`use_renderer`; a run's end sets it after its votes, keeping their grid when nothing is
    carved); None: the trained one."""
    surface_samples: int = 8

    @torch.no_grad()
    def build_surface_grid(self, resolution: int, chunk: int = 65536) -> "SdfGrid":
        """Sample the scene SDF on a ``resolution^3`` grid and render surface-first from now on."""
        from .render.surface import SdfGrid

        dev = next(self.parameters()).device
        grid = SdfGrid(resolution, BOUND_RADIUS).to(dev)
        grid.update(self.scene_sdf, chunk)
        self.set_surface_grid(grid)
        return grid

    def use_renderer(self, renderer: str, grid_resolution: int, surface_samples: int,
                     beta: Optional[float] = None, carve: Optional[Callable] = None) -> None:
        """Render ``surface``-first (a new scene-SDF grid of ``grid_resolution^3``, ``surface_samples``
        network samples per ray) or with the full ``volume`` renderer from now on; ``beta``: the density's
        Laplace scale from now on (``render.beta``; None: the trained one); ``carve``: the edit of the SDF
        from now on, maps and meshes (:class:`.carve.DepthCarve`, ``render.carve_margin``; None: the
        trained SDF)."""
        self.render_beta = beta
        self.sdf.carve = carve
        self.set_surface_grid(None)
        if renderer == "surface":
            self.surface_samples = surface_samples
            self.build_surface_grid(grid_resolution)

    def set_surface_grid(self, grid: Optional["SdfGrid"]) -> None:
        """Render surface-first with ``grid`` (None: the full volume renderer). The grid stays out of
        the module tree (no state-dict entry, not moved by ``.to``)."""
        object.__setattr__(self, "surface_grid", grid)

    def channel_sdf(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Channel SDFs ``[P, K]`` (after :attr:`channel_edit`) and geometry features at points ``[P, 3]``."""
        sdf, feat = self.sdf(x)
        if self.channel_edit is not None:
            sdf = self.channel_edit(x, sdf)
        return sdf, feat

    def color_features(self, feat: torch.Tensor, frame: Optional[torch.Tensor] = None,
                       per_ray: int = 1) -> torch.Tensor:
        """The colour head's feature input: the geometry feature ``[P, F]``, with the appearance code of each
        point's frame appended when the model has one (``frame [P / per_ray]`` frame ids, one per ray of
        ``per_ray`` consecutive points; None: the mean code of the training frames)."""
        if self.appearance is None:
            return feat
        if frame is None:
            code = self.appearance(self.appearance_frames).mean(dim=0, keepdim=True).expand(feat.shape[0], -1)
        else:
            code = self.appearance(frame.long()).repeat_interleave(per_ray, dim=0)
        return torch.cat([feat, code], dim=-1)

    def scene_sdf(self, x: torch.Tensor) -> torch.Tensor:
        """Scene SDF (min over channels) ``[P]`` at points ``[P, 3]``."""
        return self.sdf(x)[0].min(dim=-1).values

    def sample(self, origins: torch.Tensor, dirs: torch.Tensor, depth_t: Optional[torch.Tensor] = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample distances ``t [R, S]`` and the far bound ``[R]`` along rays.

        ``depth_t`` ``[R]`` (ray distance of sensor depth, 0 = invalid) switches to depth-guided sampling.
        Without it, a model with a :attr:`sample_grid` samples around the first surface of that grid of
        its own scene SDF the same way (``sampler.grid_resolution``; rays the grid finds no surface for
        get stratified samples), else the model's SDF sampler runs.
        """
        near, far = samplers.near_far_sphere(origins, dirs, BOUND_RADIUS)
        with torch.no_grad():
            g = self.sample_grid
            if depth_t is None and g is not None and bool(g.valid):
                s = self.cfg.sampler
                t_grid = g.depth(origins, dirs, near, far)
                return samplers.depth_guided_samples(near, far, t_grid, t_grid > 0, s.n_depth_uniform,
                                                     s.n_depth_near, max(s.depth_std, 0.5 * g.voxel),
                                                     perturb=self.training), far
            if depth_t is not None:
                s = self.cfg.sampler
                valid = depth_t > 0
                t = samplers.depth_guided_samples(near, far, depth_t, valid, s.n_depth_uniform, s.n_depth_near,
                                                  s.depth_std, perturb=self.training)
                if s.carve_samples > 0 and g is not None and bool(g.valid):
                    t_hit, hit, t_miss = g.trace(origins, dirs, near, far)
                    first = torch.where(t_miss >= 0, t_miss, torch.where(hit, t_hit, torch.full_like(t_hit, -1.0)))
                    t_carve = samplers.carve_samples(near, depth_t, first, s.carve_samples,
                                                     max(s.depth_std, 0.5 * g.voxel), 2.0 * s.depth_std,
                                                     perturb=self.training)
                    t = torch.sort(torch.cat([t, t_carve], dim=-1), dim=-1).values
            else:
                self.sampler.perturb = self.training
                t = self.sampler.sample(origins, dirs, near, far, self.scene_sdf, beta=float(self.beta()))
        return t, far

    def render(self, origins: torch.Tensor, dirs: torch.Tensor, depth_t: Optional[torch.Tensor] = None,
               need_normals: bool = True, create_graph: bool = True, samples: Optional[torch.Tensor] = None,
               max_delta: Optional[float] = None, frame: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        """Volume-render ``R`` rays.

        ``samples`` ``[R, S]`` (sorted distances) replaces the sampler: the first sample starts the ray
        and the last interval runs to infinity (the surface bands of :mod:`.render.surface`);
        ``max_delta`` caps the other intervals (a gap between two bands counts as empty space).
        ``frame [R]``: each ray's frame, for the appearance code (:meth:`color_features`; None: the mean code).

        Returns a dict with ``rgb [R,3]``, ``depth [R]`` (ray distance), ``normal [R,3]`` (world,
        if ``need_normals``), ``acc [R]`` (accumulated weight), ``opacity [R,K]`` (object opacities O),
        ``semantic [R,C]`` (rendered logits, if the model has a semantic head), not while training
        ``surface_owner [R]`` (the lowest channel at the ray's first sample inside the scene surface, -1 if
        none is) and ``surface_semantic [R,C]`` (the head's logits there; else the rendered ones), ``weights [R,S]``,
        ``points [R,S,3]``, ``sdf [R,S,K]``, ``grad_min [R,S,3]`` (gradient of the scene SDF, if normals).
        """
        t, far = self.sample(origins, dirs, depth_t) if samples is None else (samples, None)
        r, s = t.shape
        pts = origins[:, None, :] + t[..., None] * dirs[:, None, :]
        flat = pts.reshape(-1, 3)
        need_grad = need_normals or self.cfg.model.color_use_normal
        if need_grad:
            flat = flat.detach().requires_grad_(True)
        with torch.enable_grad() if need_grad else contextlib.nullcontext():
            sdf, feat = self.channel_sdf(flat)
            s_min = sdf.min(dim=-1).values
            grad = None
            if need_grad:
                grad = torch.autograd.grad(s_min, flat, torch.ones_like(s_min), create_graph=create_graph)[0]
        normals = None if grad is None else nn.functional.normalize(grad, dim=-1)
        view = dirs[:, None, :].expand(r, s, 3).reshape(-1, 3)
        cn = normals if self.cfg.model.color_use_normal else torch.zeros_like(flat)
        rgb = self.color(flat, view, cn, self.color_features(feat, frame, s)).reshape(r, s, 3)
        sigma_k = self.density(sdf, self.beta()).reshape(r, s, -1)
        sigma_min = self.density(s_min, self.beta()).reshape(r, s)
        dl = volume.deltas(t, far)
        if max_delta is not None:
            dl = torch.cat([dl[:, :-1].clamp(max=max_delta), dl[:, -1:]], dim=1)
        w = volume.render_weights(sigma_min, dl)
        out = {
            "rgb": volume.composite(w, rgb),
            "depth": (w * t).sum(-1),
            "acc": w.sum(-1),
            "opacity": self._object_opacity(sigma_min, sigma_k, dl, w, sdf.reshape(r, s, -1)),
            "weights": w,
            "points": pts,
            "sdf": sdf.reshape(r, s, -1),
            "t": t,
        }
        if grad is not None:
            out["grad_min"] = grad.reshape(r, s, 3)
            out["normal"] = volume.composite(w, normals.reshape(r, s, 3))
        maps = not self.training  # what the ray meets first: for maps, not for losses
        if maps:
            with torch.no_grad():
                inside = out["sdf"].min(dim=-1).values <= 0
                first, met = inside.float().argmax(dim=1), inside.any(dim=1)
                rows = torch.arange(r, device=t.device)
                out["surface_owner"] = torch.where(met, out["sdf"][rows, first].argmin(dim=-1), -1)
        if self.semantic is not None:
            logits = self.semantic_logits(feat, flat).reshape(r, s, -1)
            out["semantic"] = volume.composite(w, logits)
            if maps:
                out["surface_semantic"] = torch.where(met[:, None], logits[rows, first].detach(),
                                                      out["semantic"].detach())
        for name, head in self.heads.items():
            out[name] = volume.composite(w.detach(), head(feat, flat).reshape(r, s, -1))
        return out

    def semantic_logits(self, feat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``[P, C]`` of the semantic head at points ``x [P, 3]`` with geometry features ``feat``."""
        if self.cfg.model.semantic_detach_geometry:
            feat = feat.detach()
        if self.semantic_grid is not None:
            feat = torch.cat([feat, self.semantic_grid(x.detach())], dim=-1)
        return self.semantic(feat)

    def _backbone_weights(self, origins: torch.Tensor, dirs: torch.Tensor, depth_t: Optional[torch.Tensor]
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Samples of ``R`` rays and the backbone's render weights, as the feature rays use them.

        Returns ``t [R, S]``, the sample points ``[R*S, 3]``, their geometry features
        ``[R*S, F]`` and the weights ``[R, S]`` of the scene SDF (channel edits not applied).
        """
        t, far = self.sample(origins, dirs, depth_t)
        flat = (origins[:, None, :] + t[..., None] * dirs[:, None, :]).reshape(-1, 3)
        sdf, geo = self.sdf(flat)
        sigma_min = self.density(sdf.min(dim=-1).values, self.beta()).reshape(t.shape)
        return t, flat, geo, volume.render_weights(sigma_min, volume.deltas(t, far))

    @torch.no_grad()
    def render_point_field(self, origins: torch.Tensor, dirs: torch.Tensor,
                           field: Callable[[torch.Tensor], torch.Tensor],
                           depth_t: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Volume-render any point field ``field(x [P, 3]) -> [P, C]`` with this scene's weights -> ``[R, C]``.

        The same samples (``depth_t``: depth-guided) and weights as :meth:`render_features`,
        e.g. to render a ground-truth label field with the learned geometry (an upper bound
        for what a feature head on this geometry can reach).
        """
        t, flat, _, w = self._backbone_weights(origins, dirs, depth_t)
        return volume.composite(w, field(flat).reshape(*t.shape, -1))

    # ---- hierarchical feature head ----------------------------------------------------------------
    def point_features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature head at points ``[P, 3]`` -> ``[P, D]`` (no rendering: e.g. mesh vertices)."""
        if self.features is None:
            raise RuntimeError("SceneModel.point_features: the model has no feature head (features.enabled)")
        return self.features(self.sdf(x)[1], x)

    def render_features(self, origins: torch.Tensor, dirs: torch.Tensor, depth_t: Optional[torch.Tensor] = None
                        ) -> dict[str, torch.Tensor]:
        """Volume-render the feature head along ``R`` rays with the backbone's weights.

        With ``features.detach_geometry`` the backbone (SDF, geometry feature, weights) runs
        without autograd, so feature losses only train the head. Returns ``features [R, D]``,
        ``depth [R]`` (ray distance), ``acc [R]`` and ``weights [R, S]``.
        """
        if self.features is None:
            raise RuntimeError("SceneModel.render_features: the model has no feature head (features.enabled)")
        with torch.no_grad() if self.features.detach_geometry else contextlib.nullcontext():
            t, flat, geo, w = self._backbone_weights(origins, dirs, depth_t)
        feats = self.features(geo, flat).reshape(*t.shape, -1)
        return {"features": volume.composite(w, feats), "depth": (w * t).sum(-1), "acc": w.sum(-1), "weights": w}
