"""The method boundary: what a lifting method adds to the SDF backbone.

The backbone (multi-channel SDF, colour, semantic head, renderer, reconstruction losses) is the same
for every method. A *method* says how many SDF channels the backbone has and what they mean, which
training labels it reads, the heads it adds to the model, its loss terms for a batch, what it keeps in
a checkpoint, and how a finished run turns renders into instances and classes. Methods are classes
registered by name (``train.method``) with :func:`register`; the trainer, the pipeline and the run
loaders call this interface only, so a new method is one module in this folder.

Life of a method object (one per run, :func:`sdfseg.methods.create_method`)::

    k = method.num_channels(scene)           # SDF channels of the backbone
    labels = method.training_labels(scene, k)
    model = SceneModel(cfg, k, method.semantic_classes(scene), room_channels=method.room_channels(k),
                       heads=method.heads(scene))
    groups += method.param_groups(model)     # its heads' optimiser groups
    losses.update(method.losses(model, out, batch, step))   # after warm-up (segmentation_start)
    state["method"] = method.state_dict()    # checkpoint
    table = method.channel_table(trainer)    # end of run: what each slot is
    grid, table = method.ownership(trainer, table)   # e.g. the multi-view vote
    owner = method.owner(out)                # per rendered ray: which slot it shows
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Optional

import torch
from torch import nn

from ..config import Config
from ..data.rays import Batch
from ..data.scene import ClassInfo, Scene

if TYPE_CHECKING:
    from ..core.ownership import OwnershipGrid
    from ..training.labels import TrainingLabels
    from ..training.trainer import Trainer
    from .outputs import ChannelTable


class Method:
    """Base class of the lifting methods: the defaults are those of an instance-mode method whose
    slots are the SDF channels (ClusteringSDF and the ObjectSDF++ baselines)."""

    name: ClassVar[str] = ""
    """Registered name (``train.method``)."""
    description: ClassVar[str] = ""

    free_channels: ClassVar[bool] = False
    """Channels are free clusters, not tied to label ids: the geometry warm-up
    (``train.segmentation_start``), extra views for the cross-view term, the merge of fragments and
    the multi-view ownership vote apply."""

    view_mode: ClassVar[str] = "instance"
    """How a rendered slot becomes ids: ``instance`` (slot -> instance id and class from the channel
    table; background pixels take the semantic head's best stuff class) | ``semantic`` (slot = class)."""

    render_keys: ClassVar[tuple[str, ...]] = ("opacity",)
    """What :meth:`owner` reads from a render."""

    def __init__(self, cfg: Config, classes: Optional["ClassInfo"] = None):
        self.cfg = cfg
        self.classes = classes
        """The scene's class set (set by the trainer once the scene is read)."""

    # ---- the backbone it trains -------------------------------------------------------------------
    def num_channels(self, scene: Scene) -> int:
        """SDF channels K of the backbone."""
        return self.cfg.model.num_channels

    def semantic_classes(self, scene: Scene) -> int:
        """Classes (with void) of the backbone's semantic head; 0 for none."""
        return scene.classes.num_classes

    def room_channels(self, k: int) -> int:
        """How many channels start as the room enclosing the cameras (inside-out sphere)."""
        return 1

    def heads(self, scene: Scene) -> dict[str, nn.Module]:
        """Extra modules of the model (``SceneModel.heads[name]``); each maps ``(geometry feature [P, F],
        x [P, 3])`` to a point field ``[P, D]`` that the renderer composites into ``out[name]``."""
        return {}

    def param_groups(self, model) -> list[dict]:
        """Optimiser groups (``params``, ``lr``) of the method's own parameters (its heads)."""
        return []

    # ---- training -----------------------------------------------------------------------------------
    def training_labels(self, scene: Scene, k: int) -> "TrainingLabels":
        raise NotImplementedError

    def extra_views(self) -> bool:
        """Whether batches carry rays of extra views (the cross-view term)."""
        return False

    def segmentation_start(self) -> int:
        """Step from which the segmentation terms (and the semantic head's) train."""
        return 0

    def losses(self, model, out: dict, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        """The method's weighted segmentation terms for a batch."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        """What the method adds to a checkpoint (besides its heads' weights, which are the model's)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    # ---- the end of a run ------------------------------------------------------------------------------
    def num_slots(self, model) -> int:
        """How many slots :meth:`owner` picks from (the rows of the channel table)."""
        return model.num_channels

    def owner(self, out: dict) -> torch.Tensor:
        """Slot ``[R]`` (channel, code, ...) each rendered ray shows: the channel of largest object opacity,
        or, where the render has ``surface_owner`` (``render.labels: surface``), the lowest channel where
        the ray first meets the surface."""
        volume = out["opacity"].argmax(dim=-1)
        if "surface_owner" in out:
            return torch.where(out["surface_owner"] >= 0, out["surface_owner"], volume)
        return volume

    def channel_table(self, trainer: "Trainer") -> "ChannelTable":
        """What each slot is (object or background, class, instance id)."""
        raise NotImplementedError

    def ownership(self, trainer: "Trainer", table: "ChannelTable"
                  ) -> tuple[Optional["OwnershipGrid"], "ChannelTable"]:
        """A surface ownership grid the maps and meshes follow (or None), and the slot table after it
        (e.g. objects the grid leaves without surface become background)."""
        return None, table

    def mesh_sdf(self, trainer: "Trainer", table: "ChannelTable"):
        """``points [P, 3] -> [P, K]`` SDF columns, one per slot, that per-object meshes are cut from
        (``table``: what each slot is)."""
        return lambda p: trainer.model.channel_sdf(p)[0]


_REGISTRY: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: make ``cls`` available as ``train.method: cls.name``."""
    if not cls.name or cls.name in _REGISTRY:
        raise ValueError(f"method name {cls.name!r} is empty or taken")
    _REGISTRY[cls.name] = cls
    return cls


def method_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def method_name(cfg: Config) -> str:
    """The registered method a config trains: ``train.method``, where semantic mode's clustering is the
    ``semantic`` method."""
    m = cfg.train.method
    if cfg.train.mode == "semantic" and m == "clustering":
        return "semantic"
    return m


def method_class(cfg: Config) -> type[Method]:
    from ..errors import SdfsegError

    name = method_name(cfg)
    if name not in _REGISTRY:
        raise SdfsegError(f"config key 'train.method': expected one of {', '.join(_REGISTRY)}, got '{name}'")
    return _REGISTRY[name]


def create_method(cfg: Config, classes: Optional["ClassInfo"] = None) -> Method:
    """The method object of a run on a scene with the class set ``classes``."""
    return method_class(cfg)(cfg, classes)


class Addon:
    """A head trained beside any method (e.g. the hierarchical feature head, ``features.enabled``): its
    optimiser groups, its loss terms for a step, and what it adds to a checkpoint. Its module is part of
    the model (so its weights are in the model's state dict)."""

    name: ClassVar[str] = ""

    def param_groups(self, model) -> list[dict]:
        return []

    def losses(self, model, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        return {}

    def state_dict(self) -> dict:
        """Top-level checkpoint entries (random streams, ...)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def create_addons(cfg: Config, scene: Scene, sampler, progress: bool = True) -> list[Addon]:
    """The add-on heads the config enables (``features.enabled``: :class:`.feature_head.HierarchicalFeatures`)."""
    out: list[Addon] = []
    if cfg.features.enabled:
        from .hierarchy.addon import HierarchicalFeatures

        out.append(HierarchicalFeatures(cfg, scene, sampler, progress))
    return out
