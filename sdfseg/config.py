"""Typed experiment configuration: dataclasses, YAML loading and ``--set key=value`` overrides.

A config file is a record of an experiment: every key below, nothing hidden.
Unknown keys are an error that names the key; values are checked against the
field types. ``load_config(path, overrides)`` is the single entry point.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from .errors import SdfsegError


@dataclass
class SyntheticSpec:
    """Synthetic scene generated into ``data.path`` when it does not exist (demo)."""

    path: str = "data/demo"
    """The only folder the synthetic scene is generated into: a missing ``data.path`` elsewhere (a typo in a
    user's path, a config based on the demo's) is an error, never a generated demo scene."""
    objects: int = 6
    views: int = 60
    height: int = 120
    width: int = 160
    seed: int = 0


@dataclass
class DataConfig:
    path: str = "data/demo"
    """Scene folder."""
    layout: str = "auto"
    """On-disk layout: auto, or a reader name (panoptic_lifting, objectsdf, clusteringsdf, messy_rooms, transforms_json)."""
    image_size: Optional[list] = None
    """[height, width] to resize to on load; null keeps the native size."""
    label_source: str = "m2f"
    """Which 2D label source trains the segmentation (m2f = the layout's Mask2Former labels)."""
    max_frames: Optional[int] = None
    """Use at most this many frames (evenly spaced); null = all."""
    crop: str = "auto"
    """MonoSDF's ``center_crop_type`` of the dataset, for layouts with a MonoSDF ``cameras.npz``: ``no_crop``,
    ``center_crop_for_replica``, ``center_crop_for_tnt``, ``center_crop_for_dtu`` or ``padded_for_dtu`` (copy
    it from the MonoSDF / ObjectSDF++ conf). ``auto``: objectsdf uses K as stored when its principal point
    lies inside the image and stops otherwise, asking for this key; clusteringsdf uses K as stored."""
    generate_synthetic: bool = False
    """Generate the synthetic scene if ``path`` is ``synthetic.path`` and the folder does not exist (the demo)."""
    synthetic: SyntheticSpec = field(default_factory=SyntheticSpec)
    sphere_radius: float = 0.9
    """Radius the scene is normalised into (the SDF's bounding sphere is 1)."""
    missing_hint: str = ""
    """Extra text for the error shown when ``path`` is missing (how to get the data)."""


@dataclass
class EncodingConfig:
    n_levels: int = 16
    n_features_per_level: int = 2
    log2_hashmap_size: int = 19
    base_resolution: int = 16
    max_resolution: int = 2048
    backend: str = "auto"
    """auto | torch | tcnn"""


@dataclass
class ModelConfig:
    num_channels: int = 50
    """K SDF channels (instance mode: max objects + 1, channel 0 = background). Semantic mode uses num_classes."""
    hidden_dim: int = 256
    n_hidden_layers: int = 2
    feature_dim: int = 256
    n_frequencies: int = 6
    weight_norm: bool = True
    encoding: EncodingConfig = field(default_factory=EncodingConfig)
    color_hidden_dim: int = 256
    color_layers: int = 2
    appearance_dim: int = 0
    """Per-frame appearance embedding (NeRF-W, nerfstudio) of this size, fed to the colour head with the
    geometry feature: for captures whose exposure or white balance changes from frame to frame (phones). Views
    that were not trained (test frames, novel poses, vertex colours) use the mean of the training frames'
    codes. 0 = off."""
    color_use_normal: bool = True
    opacity: str = "density"
    """Object opacity O: density (reference, ObjectSDF++ eq.) | ownership (detached render weights split
    by a softmax over -sdf / ownership_tau; segmentation cannot move surfaces)."""
    ownership_tau: float = 0.01
    ownership_tau_final: Optional[float] = None
    """null: ownership_tau is constant. A value anneals it geometrically from ownership_tau over training:
    a warm softmax early lets a channel take a whole surface over, a cold one late gives crisp ownership."""
    ownership_owner_grad: str = "full"
    """``opacity: ownership`` only: what the segmentation terms may do to the channel with the lowest SDF at a
    sample (the owner, whose SDF is the scene's there). ``full``: anything (lowering it moves the scene surface
    out and fattens objects, docs/quality.md); ``none``: nothing (it enters the softmax detached, so a sample is
    won by pulling rivals down: tried, the geometry collapses); ``raise``: only raise it (a one-sided gradient),
    so a sample changes hands by raising its owner, and a rival that crosses below becomes the owner and cannot
    be pulled further down."""
    scene_offsets: bool = False
    """The network outputs the scene SDF ``g`` and K channel offsets ``a_k``; channel ``k`` is
    ``g + a_k - min_j a_j``. The scene SDF (the min) is ``g`` whatever the offsets are, and who owns a point
    depends on the offsets alone, so the segmentation terms' ownership softmax cannot move the surface (only
    the shared trunk links them). false: the K channels are the outputs (ObjectSDF++)."""
    offsets_detach_trunk: bool = False
    """``scene_offsets`` only: the offsets read the trunk's features detached, so no loss on the channels
    reaches the trunk and hash grid that the scene SDF is made of (the offsets are then a linear read-out
    of the geometry's features)."""
    offset_grid_levels: int = 0
    """``scene_offsets`` only: > 0 gives the offsets a network of their own (the frequency encoding, a hash
    grid of this many levels with 2 features each and the SDF grid's table size, an MLP as wide and deep
    as the trunk), so the losses on the channels neither reach the trunk the scene SDF is made of nor read
    its features. 0: the offsets are rows of the trunk's output layer."""
    offset_grid_max_resolution: int = 256
    detach_occlusion: bool = False
    """Object opacities O use a detached scene transmittance (segmentation losses do not move surfaces)."""
    beta_init: float = 0.1
    beta_final: Optional[float] = None
    """null: beta is learned (reference). A value anneals beta geometrically from beta_init to it over
    training: surfaces sharpen on schedule, which short CPU runs need."""
    object_radius: float = 0.1
    semantic_grid_levels: int = 0
    """Levels of the semantic head's own hash grid (2 features each, 2^15 entries, finest resolution
    ``semantic_grid_max_resolution``), whose features the head reads beside the SDF's geometry feature.
    0 = the geometry feature only (as before). The geometry feature is shaped by SDF and colour: on a
    door or window flush with a wall it is the wall's, and the head named such pixels wall."""
    semantic_grid_max_resolution: int = 256
    semantic_detach_geometry: bool = False
    """The semantic head's cross-entropy stops at the geometry feature (it trains only the head and its
    grid, and cannot move the SDF's features). false = as before: its gradient reaches the SDF."""
    gradient: str = "analytic"
    """analytic | finite_difference (SDF gradients for eikonal, normals)."""
    fd_eps: float = 1e-3


@dataclass
class SamplerConfig:
    kind: str = "hierarchical"
    """hierarchical (NeuS-style up-sampling) | error_bounded (VolSDF)."""
    n_coarse: int = 64
    n_importance: int = 32
    n_rounds: int = 2
    use_depth: bool = True
    """Training rays with sensor depth sample around it (depth_guided) instead of the SDF sampler."""
    n_depth_uniform: int = 24
    n_depth_near: int = 24
    depth_std: float = 0.02
    grid_resolution: int = 65
    """Rays without metric sensor depth (monocular cues, transforms.json without depth, or
    ``use_depth: false``): vertices per side of a grid of the model's own scene SDF, refreshed every
    ``grid_update_every`` steps (``4 m + 1``: coarse to fine), whose first surface crossing each ray is
    sampled around as sensor depth would be (``n_depth_uniform + n_depth_near`` samples, spread
    ``max(depth_std, half a voxel)``): no SDF sampler rounds. 0 = off (the ``kind`` sampler)."""
    grid_update_every: int = 50
    carve_samples: int = 0
    """Rays with metric sensor depth: this many more samples per ray, around the first surface crossing
    (or graze) of the grid of the model's own scene SDF (``grid_resolution``, refreshed every
    ``grid_update_every`` steps) where it lies more than ``2 depth_std`` in front of the sensor depth:
    a floater or a fattened silhouette the depth-guided samples would miss, so the depth terms see and
    carve it. Rays without one get them stratified between the near bound and the sensor depth. 0 = off."""


@dataclass
class LossWeights:
    """Loss weights (reference values; REFERENCE 1-2)."""

    rgb: float = 1.0
    eikonal: float = 0.1
    smooth: float = 0.005
    depth: float = 0.1
    opacity: float = 0.0
    """Sensor depth only: rays with a depth reading are opaque, ``|1 - acc|`` (0 = off, the reference)."""
    surface_sdf: float = 0.0
    """Sensor depth only: scene SDF is zero at the observed surface point, ``|s(o + t_d d)|`` (0 = off)."""
    sdf_band: float = 0.0
    """Sensor depth only: truncated SDF supervision along rays (projective distance inside a band of
    +-``sdf_trunc`` around the depth, SDF >= ``sdf_trunc`` in front of it). 0 = off (the reference)."""
    sdf_trunc: float = 0.05
    normal_l1: float = 0.05
    normal_cos: float = 0.05
    diff: float = 20.0
    onehot: float = 0.5
    reg: float = 1.0e4
    fg: float = 0.1
    bg: float = 0.2
    cluster_temperature: Optional[float] = 1.0
    """Temperature T of the cluster probabilities ``P = softmax(O / T)`` of eqs. 4, 6, 8 and 9 (1.0: the
    paper). With ``O`` in [0, 1] a one-hot opacity gives ``P_max = e / (e + K - 1)``: 0.23 at K = 10 but
    0.05 at K = 50, so the clustering signal fades as K grows. null = scale with K so that a one-hot
    ``O`` gives the ``P`` it gives at K = 10 (``1 / T = 1 + ln((K - 1) / 9)``, T = 1 up to K = 10)."""
    cluster_confidence: bool = False
    """Weight each labelled ray of the clustering terms (its share of a cluster centre, eqs. 4 and 8-9; the
    one-hot and fg-bg terms, eqs. 5 and 7) by the 2D labels' confidence at its pixel (at least 0.05; 1 without
    a confidence map). The test-time-augmentation confidence is low at mask edges and on wrong segments,
    where a dilated mask would pull an object's channel onto the surface behind it. false = the paper (the full
    quality tier did not keep it: docs/quality.md)."""
    fgbg_sdf: float = 0.0
    """Multiplier of the SDF-space fg-bg hinge (``losses.clustering.fg_bg_sdf_loss``, weights bg / fg as
    above); 0 = reference (eq. 7 on the opacities only)."""
    fgbg_margin: float = 0.02
    semantic: float = 1.0
    """Eq. 8 (semantic mode)."""
    semantic_head: float = 0.5
    """Cross-entropy of the instance-mode semantic head (classes for stuff pixels and object channels)."""
    semantic_balance: float = 0.0
    """Class weights of that cross-entropy: ``f_c ** -semantic_balance`` for a class with a fraction
    ``f_c`` of the labelled training pixels, scaled so the pixel-weighted mean weight is 1. 0 = unweighted;
    0.5 = inverse square root of the frequency (rare classes such as doors and ceilings otherwise get
    a few rays per batch and lose to the wall)."""
    cross_view: float = 1.0
    distinction: float = 0.5
    supervised: float = 1.0
    clustering: float = 1.0
    """Global multiplier of the segmentation terms (reference semantic mode: 1.5)."""


@dataclass
class TrainConfig:
    mode: str = "instance"
    """instance | semantic."""
    method: str = "clustering"
    """The lifting method (:mod:`sdfseg.methods`): clustering (ClusteringSDF) | supervised (ObjectSDF++
    opacity loss on the labels as given) | semantic (with ``mode: semantic``; semantic mode's clustering
    is this method too) | codebook (Unified-Lift's object codebook)."""
    iterations: int = 120000
    rays: int = 1024
    label_rays: int = 512
    """Of ``rays``, how many are allocated per label in proportion to area (label-comprehensive sampling)."""
    depth_rays: int = 0
    """Scenes with sparse depth (a COLMAP capture's SfM points, ``depth_kind: sparse``): this many more rays
    per step through the main frame's pixels that have a point, so the depth losses see some every step
    (DS-NeRF). Ignored for other scenes."""
    edge_rays: int = 0
    """Of the uniform rays (``rays - label_rays``), how many go through the main frame's edge pixels instead: where
    its sensor depth jumps (more than 5% of the nearer depth) or its training label changes, either side. More
    supervision where a silhouette lies; 0 = off (uniform, the reference)."""
    depth_edge_rays: int = 0
    """More rays per step, on top of ``rays``, through the main frame's depth edges (its sensor depth jumps by
    more than 5% of the nearer depth, either side), for the geometry only: their 2D labels are not used (the
    clustering terms and the semantic head skip them), so the ragged mask edges there stay out of the
    segmentation. Thin parts (chair legs 1-2 pixels wide) get more supervision; 0 = off. Scenes without
    metric depth ignore it."""
    lr: float = 5.0e-4
    grid_lr: float = 1.0e-2
    lr_final_ratio: float = 0.1
    beta_lr: Optional[float] = None
    """Learning rate of the density's beta (null = train.lr). Short CPU runs need a larger one so
    surfaces sharpen within a few thousand iterations."""
    eikonal_points: int = 1024
    keyframe_ratio: float = 0.1
    replace_prob: float = 0.2
    extra_views: int = 4
    extra_rays: int = 64
    distinction_start: float = 0.5
    """Fraction of training after which the object-distinction regulariser is on."""
    segmentation_start: int = 0
    """Iteration at which the ClusteringSDF instance losses start (geometry warm-up before). Only for
    ``mode: instance, method: clustering``: channels tied to fixed ids (semantic mode, the supervised
    baselines) get their losses from step 0, since a channel that owns no geometry after a warm-up
    cannot win it back."""
    seed: int = 0
    device: str = "auto"
    deterministic: bool = True
    """On CUDA, use torch's deterministic kernels (``torch.use_deterministic_algorithms``, warn-only, and
    ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` unless set) so that a run and a killed-and-resumed run end with the
    same weights bit for bit; false trades that for a little speed. The CPU kernels used are deterministic
    either way, and this changes nothing there."""
    checkpoint_every: int = 1000
    log_every: int = 50
    max_bad_steps: int = 10
    """A step whose loss or gradient is not finite is skipped (no optimiser update; counted and logged);
    after this many such steps in a row training stops with an error naming the step and the loss
    terms. 0 = stop at the first one."""
    remap_ids: bool = True
    """Remap each frame's instance ids to random distinct integers at load (REFERENCE 2)."""
    oracle_labels: bool = False
    """Train on the GT labels (the 'ObjectSDF++ with GT labels' oracle row)."""


@dataclass
class RenderConfig:
    chunk: int = 2048
    """Rays per chunk when rendering test views."""
    renderer: str = "surface"
    """After training (class votes, ownership vote, test views): ``surface`` finds each ray's surface on
    a grid of the scene SDF first and evaluates the network at ``surface_samples`` samples around it
    (``sdfseg/core/render/surface.py``; rays without a surface there fall back to the full renderer) |
    ``volume``: the training sampler's full volume rendering."""
    grid_resolution: int = 129
    """Vertices per side of the scene-SDF grid of the surface renderer (``4 m + 1`` builds it coarse to
    fine: the network is evaluated densely only near surfaces)."""
    surface_samples: int = 8
    """Network samples per ray in the surface renderer's band."""
    beta: Optional[float] = None
    """Laplace scale of the density (normalised units) of the rendered maps after training (test views,
    ``tools/prompt.py``); null: the trained one (``model.beta_final``). The class and ownership votes
    keep the trained one. A smaller one renders the same SDF sharper: a ray that passes an object's edge
    without meeting its surface gathers less of its opacity, so silhouettes (and the rendered depth at
    them) are not drawn fatter than the surface."""
    carve_margin: float = 0.0
    """Depth carving of the maps and meshes after training (:mod:`sdfseg.core.carve`), in the units of
    the scene's depth and poses (metres for the shipped layouts); 0 = off. Space that the training views'
    sensor depth saw through (a point at least this much in front of the depth of the pixel it projects
    to, in at least ``carve_share`` of the views that see it) is lifted above the surface: silhouettes
    and the undersides of seats and table tops no view saw are not drawn fatter than the depth measured
    them. The margin covers the sensor's noise and a pixel's footprint. The class and ownership votes
    use the trained SDF. Scenes without dense sensor depth are not carved. A carved surface is as thin
    as the object: use ``grid_resolution`` 257 or more with the surface renderer."""
    carve_share: float = 0.5
    """Depth carving: the least share of the views that see a point (through it or on their surface,
    within ``carve_margin``) that must see through it. Below 1, a structure thinner than a pixel that
    some views' pixel centres miss keeps the points the other views see."""
    labels: str = "volume"
    """Where the rendered instance and semantic maps read a pixel's labels: ``volume`` (the volume-rendered
    object opacities and class logits, as in the paper) | ``surface`` (the channel lowest, and the
    semantic head's logits, at the ray's first sample inside the scene surface; rays that meet no
    surface keep the volume-rendered ones). A ray that passes close to an object's edge without meeting
    it gathers some of its opacity; ``surface`` gives it to what the ray does meet, so silhouettes are
    not drawn fatter than the surface. Methods whose slots are the SDF channels (not the codebook)."""
    semantic_veto: bool = False
    """Instance mode with a semantic head: a pixel whose object's class scores below some stuff class in the
    head's logits shows background (instance 0, that stuff class) (``sdfseg.methods.outputs.pixel_labels``).
    The channels hold floor or wall around their objects where the 2D masks spill over; the head, trained
    on the class labels of every view, knows that floor."""
    export_mesh: bool = True
    mesh_resolution: int = 256
    merge_share: float = 0.0
    """ClusteringSDF instance mode (free channels): merge an object channel into another when more than
    this share of its training pixels lie in 2D masks the other dominates (an object split over
    channels; see ``sdfseg.methods.clustering.channels.channel_groups``). 0 = off (every object channel is its own instance).
    Fixed-id channels (semantic mode, the ObjectSDF++ baselines) are never merged."""
    merge_same_class: bool = False
    """With ``merge_share``: two object channels are merged only when their class votes give the same class
    (summed over the channels already merged), so a 2D mask covering two touching objects of different
    classes (a bag on a bed) does not make them one."""
    object_mask_share: float = 0.0
    """ClusteringSDF instance mode: how a channel becomes an object. 0 = by the class vote of all the
    training pixels it owns (an object when that class is a thing). Above 0: an object when at least
    this share of its labelled pixels lie in 2D instance masks, its class voted by the thing labels of
    those pixels only. The floor or wall that a small object's channel also owns around it then no
    longer outvotes the object (see ``sdfseg.methods.clustering.channels.assign_channel_classes``)."""
    vote_grid: int = 0
    """ClusteringSDF instance mode: voxels per side of the multi-view ownership vote that decides, after
    training, which object (or background) owns each piece of surface (``sdfseg/methods/clustering/ownership.py``;
    written to ``RUN/ownership.npz``, used by the test renders and the meshes). 0 = off (the channel
    with the largest opacity owns the pixel, as in the paper)."""
    mesh_support: int = -1
    """With the ownership vote (``vote_grid`` > 0): cut each object's mesh to the vote's voxels that went
    to that object, grown by this many voxels (``sdfseg.training.pipeline.supported_sdf``): a channel's
    zero set elsewhere (in space no view saw, or floor it owns far from the object) is not part of the
    object. -1 = off (the channel's whole zero set)."""
    vote_rays: int = 32768
    """Training rays rendered for the ownership vote."""
    vote_object_share: float = 0.5
    """A voxel goes to an object only when objects have more than this share of its votes (to
    background when background has at least half; in between it keeps the channels' ownership)."""
    vote_confidence: bool = False
    """Weigh each ray's vote by its label's confidence (the maps' TTA confidence, as the training losses
    do): a segment the 2D segmenter got wrong in a few views, with a low confidence there, is outvoted by
    the views that got it right. False: every ray's vote counts the same."""
    vote_kernel: int = 3
    """Each vote also counts in the ``vote_kernel^3`` neighbouring voxels (1 = its own voxel only)."""
    vote_refine: bool = False
    """Inside the vote's boundary voxels (a decided voxel beside one decided otherwise) each point goes to
    whichever owner of the voxel's neighbourhood has the lowest channel SDF there, not the whole voxel to
    one owner; meshes then keep those voxels too (``OwnershipGrid.refine``). False: a voxel has one owner."""
    vote_min_island: int = 0
    """A piece of the vote's grid with one decision (background or an object) and fewer voxels than
    this goes to the decision holding more than half of the decided voxels around it (``absorb_islands`` in
    ``sdfseg/methods/clustering/ownership.py``): stray votes neither cut holes in an object nor make
    fragments of one elsewhere. 0 = off."""
    split_grid: int = 0
    """ClusteringSDF with the ownership vote: voxels per side of the split step's grid
    (``sdfseg/methods/clustering/split.py``): an object instance whose surface is several pieces far
    apart that the 2D masks keep apart (two identical chairs trained into one channel) becomes several
    instances, each new one in a spare channel. 0 = off."""
    split_link: float = 0.25
    """Split step: two pieces stay one object when their rays share 2D masks by more than this share of
    the smaller piece's rays (``sdfseg.methods.clustering.split.mask_links``)."""
    split_min_share: float = 0.1
    """Split step: a piece must hold at least this share of its instance's labelled rays (and 40 rays) to
    become an object of its own."""
    split_bisect: int = 0
    """Split step: levels of 2-means cuts of each connected piece, a cut standing only where the 2D masks
    keep its halves apart (``sdfseg.methods.clustering.split.bisect_components``): two chairs that stray
    surface points join into one piece are still cut. 0 = connected pieces only."""
    split_valley: float = 0.0
    """Split step with ``split_bisect``: a 2-means cut also stands where the geometry keeps the halves
    apart though the masks link them (labels that merge touching objects in half of the views): along the
    line through the halves' centres the surface points' sparsest slab (one split-grid voxel thick) holds
    at most this share of the lower half's densest (``sdfseg.methods.clustering.split.valley``); the masks
    then do not join the halves again. 0 = off."""
    split_valley_link: float = 0.75
    """Split step with ``split_valley``: a cut by the geometry stands only where the halves share at most
    this share of the smaller one's rays in common masks (an object whose parts meet in a thin stem is
    covered by one mask in nearly every view)."""
    split_join_touching: float = 0.0
    """Split step with ``split_valley``: a piece cut off by the geometry alone (masks merge it with the rest)
    that would become an object of its own joins an object instance of its class instead when more than
    this share of its labelled surface points lie within one split-grid voxel of that instance's
    (``sdfseg.methods.clustering.split.touching_instance``): the back of a chair whose seat has a channel
    of its own. Pieces the masks cut off stay objects of their own. 0 = off."""
    split_class: bool = False
    """Split step: an object instance whose surface holds a connected piece that the semantic head calls
    another thing class, and the 2D labels too on more than half of its rays, is cut there, the piece an
    object of that class (``sdfseg.methods.clustering.split.plan_class_splits``; ``split_min_share``
    sizes the pieces unless ``split_class_min_share`` is set): a chair trained into the table's channel.
    The head is the one ``loss.semantic_head`` trains; a model without one (semantic mode) is not cut
    this way."""
    split_class_min_share: Optional[float] = None
    """Split step with ``split_class``: the least share of its instance's labelled rays (and 40 rays) a
    piece of another class must hold; null: ``split_min_share``. A small object the channel table merged
    into a large one's instance (a bag into the sofa's) is a small share of it."""
    split_class_depth: float = 0.0
    """Split step with ``split_class``: a piece of another class is cut only where the sensor depth says it
    is there: more than half of its rays with depth render their surface within this of the measured
    depth, in the units of the scene's depth and poses (metres for the shipped layouts). Surface the
    channel holds in front of what the views saw (a floater whose pixels see the sofa behind it) is no
    object. 0 = off; scenes without depth in the poses' units (none, or a monocular cue up to scale and
    shift) are not checked."""
    join_fit: float = 0.0
    """ClusteringSDF instance mode, after the split step: two object instances of one thing class join
    when the box of their surface points together fits in this many times one object of that class (each
    sorted extent against the class's typical one over the scene's instances; the seat and the back of a
    chair that the geometry and the masks left apart; ``sdfseg/methods/clustering/join.py``). 0 = off."""
    vote_max_gap: Optional[float] = None
    """Geometry gate of the vote (normalised units): a vote, and then the re-assignment of a point,
    counts only where the voted instance's own SDF lies within this of the scene SDF (the object
    already models that surface; a label dilated onto the floor beside it does not move the floor).
    null = no gate."""


@dataclass
class FeatureLossConfig:
    """Loss of the hierarchical feature head (REFERENCE 3); see docs/hierarchy.md for the weights."""

    kind: str = "contrastive"
    """contrastive (OmniSeg3D hierarchical contrastive, eq. 4) | ultrametric (ultrametric feature fields)."""
    weight: float = 0.01
    """Weight of the contrastive (or ultrametric) term. The paper's 5e-4 multiplies a sum over
    8192 rays; ours is a per-ray mean. With ``detach_geometry`` only the head receives these
    gradients and Adam makes the overall scale irrelevant: only the ratio to ``norm_weight`` matters."""
    norm_weight: float = 0.001
    """Weight of the norm loss ``(||f|| - 1)^2`` (mean over rays)."""
    decay: float = 0.5
    """Per-level decay lambda of the contrastive loss (lambda = 0: no hierarchy, only the finest level)."""
    level_reduction: str = "sum"
    """sum (eq. 4) | mean (reference code): how the patches of one level are combined."""
    min_rays: int = 2
    """Patches hit by fewer feature rays are ignored (their prototypes are noise)."""
    tau: float = 0.1
    """Ultrametric: temperature of the pair contrastive loss."""
    knn: int = 10
    """Ultrametric: neighbours of the image-space kNN graph over the feature rays."""
    pairs_per_mask: int = 64
    """Ultrametric: positive/negative pairs per mask of the inclusion tree."""
    euclidean_weight: float = 1.0
    """Ultrametric: weight of the direct (Euclidean-space) pair term added to the ultrametric one."""


@dataclass
class CodebookConfig:
    """Unified-Lift's object codebook (``train.method: codebook``; REFERENCE 4, paper 001): a per-point
    object feature rendered with the backbone's weights, a codebook of ``size`` object vectors, the
    area-aware ID mapping (Hungarian assignment on un-normalised summed probabilities per 2D mask),
    cross-entropy to the matched codes, the concentration term and the noisy-label filter."""

    size: int = 256
    """L: object vectors in the codebook (the most objects a scene can have)."""
    dim: int = 16
    """D: size of the object feature and of each code."""
    hidden: int = 64
    layers: int = 2
    num_freqs: int = 6
    grid_levels: int = 8
    """Levels of the head's own hash grid (0 = none)."""
    grid_log2_hashmap_size: int = 15
    grid_max_resolution: int = 256
    detach_geometry: bool = True
    """Stop the head's gradient at the geometry feature (its terms then leave the SDF alone; the render
    weights are detached either way)."""
    lr: float = 5.0e-3
    """Learning rate of the head's MLP and of the codebook."""
    grid_lr: float = 1.0e-2
    class_weight: float = 1.0
    """w_class: cross-entropy of the association probabilities to the matched codes (eq. 4)."""
    concentration: float = 0.1
    """w_concen: L1 distance of the matched code to the L1-normalised feature (eq. 6)."""
    contrastive: float = 1.0
    """Weight of the feature's InfoNCE term against the masks' centroids (eq. 1)."""
    filter_tau: float = 0.8
    """Noisy-label filter (eq. 7-8): pixels whose uncertainty is above ``filter_tau`` leave the
    association terms; 1 = off."""
    filter_start: float = 0.3
    """Fraction of training before the filter starts (the features must first mean something)."""
    mesh_resolution: int = 128
    """Grid on which each code's region of the scene solid is labelled for its mesh."""


@dataclass
class FeatureConfig:
    """Hierarchical feature head (OmniSeg3D / ultrametric feature fields) on the SDF backbone."""

    enabled: bool = False
    """Train a feature head in the same run as the SDF channels (off = the run is unchanged)."""
    dim: int = 16
    """Feature size D."""
    hidden: int = 64
    """Hidden width of the head MLP."""
    layers: int = 2
    """Hidden layers of the head MLP."""
    num_freqs: int = 6
    """Frequencies of the head's own position encoding (0 = geometry feature only)."""
    detach_geometry: bool = True
    """Stop feature-loss gradients at the backbone (geometry feature and rendering weights)."""
    grid_levels: int = 8
    """Levels of the head's own hash grid (2 features each; 0 = none: geometry feature + encoding only)."""
    grid_log2_hashmap_size: int = 15
    grid_max_resolution: int = 256
    grid_lr: float = 5.0e-2
    """Learning rate of the head's hash grid."""
    mask_source: str = "sim"
    """Multi-granular 2D masks: the scene's ``masks_<source>/`` folder (sim, sam, classical)."""
    rays: int = 1024
    """Feature rays per iteration, all from one training frame (half uniform, half shared by its patches)."""
    lr: float = 2.0e-2
    """Learning rate of the head's MLP (decays with the run's schedule)."""
    start: int = 0
    """Iteration at which the feature loss starts."""
    head_iterations: int = 3000
    """Steps of a head-only stage on a trained run's frozen backbone (``tools/train_features.py``)."""
    loss: FeatureLossConfig = field(default_factory=FeatureLossConfig)


@dataclass
class RunConfig:
    dir: str = "runs/demo"
    """Run directory: config.yaml, checkpoints/, tb/, test/, metrics.json, meshes/."""


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    loss: LossWeights = field(default_factory=LossWeights)
    train: TrainConfig = field(default_factory=TrainConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    run: RunConfig = field(default_factory=RunConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    """Optional hierarchical feature head (disabled by default)."""
    codebook: CodebookConfig = field(default_factory=CodebookConfig)
    """Settings of the codebook method (``train.method: codebook``)."""


RESUMABLE = ("render.", "run.dir", "train.device", "train.deterministic", "train.log_every",
             "train.checkpoint_every", "train.max_bad_steps", "data.path", "data.missing_hint",
             "features.head_iterations")
"""Keys (or section prefixes) ``--resume`` may change: how the end of the run is rendered (``render.*``:
re-rendering a finished run with other settings is a documented use), where things are (the run and
the scene folder may move), the device and logging. Every other key shapes the trained model or its
schedule, so resuming with another value would continue a different experiment."""


def flatten(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """``{"train.lr": 0.0005, ...}``: every leaf key of a config dataclass (or dict) with its value."""
    d = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else cfg
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_resume_changes(previous: Config, current: Config, source: str | Path) -> list[str]:
    """Keys whose values differ between the run's config ``previous`` (read from ``source``) and
    the ``current`` one; a one-line error for any key ``--resume`` may not change (:data:`RESUMABLE`)."""
    old, new = flatten(previous), flatten(current)
    changed = [k for k in new if old.get(k) != new[k]]
    bad = [k for k in changed if not any(k == r or (r.endswith(".") and k.startswith(r)) for r in RESUMABLE)]
    if bad:
        k = bad[0]
        more = f" (and {len(bad) - 1} more: {', '.join(bad[1:4])})" if len(bad) > 1 else ""
        raise SdfsegError(f"--resume: config key '{k}' is {old.get(k)!r} in {source} but {new[k]!r} now{more}; "
                          f"--resume may change only {', '.join(r + '*' if r.endswith('.') else r for r in RESUMABLE)}; "
                          "start a new run (another run.dir) to change it")
    return changed


def _check_value(key: str, tp: Any, value: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _check_value(key, args[0], value)
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # PyYAML reads "1e4" / "1.0e4" as strings
        try:
            return float(value)
        except ValueError:
            pass
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is bool and isinstance(value, bool):
        return value
    if tp is str and isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    if (tp is list or origin is list) and isinstance(value, (list, tuple)):
        return list(value)
    raise SdfsegError(f"config key '{key}': expected {getattr(tp, '__name__', tp)}, got {value!r}")


def _from_dict(cls: type, data: dict, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise SdfsegError(f"config key '{prefix.rstrip('.') or '<root>'}': expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for k in data:
        if k not in known:
            raise SdfsegError(f"config key '{prefix}{k}' is unknown (known keys here: {', '.join(sorted(known))})")
    obj = cls()
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            setattr(obj, f.name, _from_dict(tp, data[f.name], f"{prefix}{f.name}."))
        else:
            setattr(obj, f.name, _check_value(prefix + f.name, tp, data[f.name]))
    return obj


def parse_overrides(overrides: list[str]) -> dict:
    """``["a.b=1", "c=x"]`` -> nested dict; values parsed as YAML scalars/lists."""
    out: dict = {}
    for item in overrides:
        if "=" not in item:
            raise SdfsegError(f"--set '{item}': expected key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise SdfsegError(f"--set '{item}': '{p}' is not a section")
        node[parts[-1]] = value
    return out


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _read_yaml(path: Path, chain: tuple[Path, ...] = ()) -> dict:
    """One config file as a dict; a top-level ``base: other.yaml`` (relative to this file) is loaded
    first and this file's keys are merged over it (recursively, so bases can have bases)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        where = f" (the base of {chain[-1]})" if chain else ""
        raise SdfsegError(f"{path}: config file not found{where}") from None
    except IsADirectoryError:
        raise SdfsegError(f"{path}: is a folder, expected a YAML config file") from None
    except UnicodeDecodeError:
        raise SdfsegError(f"{path}: not a text file (expected a UTF-8 YAML config)") from None
    except OSError as exc:
        raise SdfsegError(f"{path}: cannot read the config ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise SdfsegError(f"{path}: invalid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(data, dict):
        raise SdfsegError(f"{path}: expected a mapping of config sections at the top level")
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise SdfsegError(f"{path}: key 'base' must be a config file name, got {base!r}")
    base_path = (path.parent / base).resolve()
    if base_path in chain or base_path == path.resolve():
        raise SdfsegError(f"{path}: key 'base' makes a cycle through {base_path.name}")
    return _merge(_read_yaml(base_path, chain + (path.resolve(),)), data)


def bundled_config(path: str | Path) -> Path:
    """``path`` itself when it exists; else, for a bare name or ``confs/<name>`` of one of the project's
    configs, the copy an installed package carries (``<prefix>/share/sdfseg/confs``), so the installed
    commands work outside the repository checkout (``sdfseg-train demo.yaml``)."""
    p = Path(path)
    if p.exists() or not (len(p.parts) == 1 or (len(p.parts) == 2 and p.parts[0] == "confs")):
        return p
    for root in (Path(sys.prefix), Path(sys.base_prefix)):
        q = root / "share" / "sdfseg" / "confs" / p.name
        if q.is_file():
            return q
    return p


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config (or the defaults when ``path`` is None) and apply ``key=value`` overrides.

    A config may start from another one with a top-level ``base: FILE`` (path relative to the
    config); its own keys override the base's, section by section. A project config given by name
    is found in an installed package too (:func:`bundled_config`).
    """
    data: dict = _read_yaml(bundled_config(path)) if path is not None else {}
    data = _merge(data, parse_overrides(overrides or []))
    cfg = _from_dict(Config, data, "")
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Cross-field checks with one-line errors naming the key."""
    choices = {
        "train.mode": (cfg.train.mode, ("instance", "semantic")),
        "model.gradient": (cfg.model.gradient, ("analytic", "finite_difference")),
        "model.encoding.backend": (cfg.model.encoding.backend, ("auto", "torch", "tcnn")),
        "sampler.kind": (cfg.sampler.kind, ("hierarchical", "error_bounded")),
        "model.opacity": (cfg.model.opacity, ("density", "ownership")),
        "render.renderer": (cfg.render.renderer, ("surface", "volume")),
        "model.ownership_owner_grad": (cfg.model.ownership_owner_grad, ("full", "none", "raise")),
        "features.loss.kind": (cfg.features.loss.kind, ("contrastive", "ultrametric")),
        "features.loss.level_reduction": (cfg.features.loss.level_reduction, ("sum", "mean")),
    }
    for key, (val, allowed) in choices.items():
        if val not in allowed:
            raise SdfsegError(f"config key '{key}': expected one of {', '.join(allowed)}, got '{val}'")
    if cfg.model.offsets_detach_trunk and not cfg.model.scene_offsets:
        raise SdfsegError("config key 'model.offsets_detach_trunk': needs model.scene_offsets: true (there are no "
                          "offsets to detach without it)")
    if cfg.model.offset_grid_levels > 0 and not cfg.model.scene_offsets:
        raise SdfsegError("config key 'model.offset_grid_levels': needs model.scene_offsets: true (there are no "
                          "offsets to give a network without it)")
    if cfg.model.offset_grid_levels > 0 and cfg.model.offsets_detach_trunk:
        raise SdfsegError("config key 'model.offset_grid_levels': not with model.offsets_detach_trunk (two ways to "
                          "keep the offsets off the trunk: choose one)")
    from .methods import method_class, method_names

    if cfg.train.method not in method_names():
        raise SdfsegError(f"config key 'train.method': expected one of {', '.join(method_names())}, "
                          f"got '{cfg.train.method}'")
    if cfg.train.method == "semantic" and cfg.train.mode != "semantic":
        raise SdfsegError("config key 'train.mode': train.method 'semantic' trains one channel per class; "
                          "set train.mode: semantic with it")
    method_class(cfg)
    if cfg.model.num_channels < 2:
        raise SdfsegError(f"config key 'model.num_channels': expected >= 2 (background + objects), "
                          f"got {cfg.model.num_channels}")
    _validate_ranges(cfg)
    _validate_features(cfg.features)
    _validate_codebook(cfg.codebook)
    r = cfg.render
    if r.vote_grid < 0 or r.vote_rays <= 0:
        raise SdfsegError(f"config keys 'render.vote_grid' (>= 0, 0 = off), 'render.vote_rays' (> 0): "
                          f"got {r.vote_grid}, {r.vote_rays}")
    if r.labels not in ("volume", "surface"):
        raise SdfsegError(f"config key 'render.labels': expected volume or surface, got {r.labels!r}")
    if not 0.0 <= r.split_min_share < 1.0:
        raise SdfsegError(f"config key 'render.split_min_share': expected a share in [0, 1), got {r.split_min_share}")
    if not 0.0 <= r.split_valley < 1.0 or not 0.0 <= r.split_valley_link <= 1.0:
        raise SdfsegError(f"config keys 'render.split_valley' (a share in [0, 1), 0 = off), 'render.split_valley_link' "
                          f"(a share in [0, 1]): got {r.split_valley}, {r.split_valley_link}")
    if r.split_class_min_share is not None and not 0.0 <= r.split_class_min_share < 1.0:
        raise SdfsegError(f"config key 'render.split_class_min_share': expected a share in [0, 1) or null, "
                          f"got {r.split_class_min_share}")
    if not r.split_class_depth >= 0.0:
        raise SdfsegError(f"config key 'render.split_class_depth': expected a distance >= 0 (0 = off), "
                          f"got {r.split_class_depth}")
    if not r.join_fit >= 0.0:
        raise SdfsegError(f"config key 'render.join_fit': expected a factor >= 0 (0 = off), got {r.join_fit}")
    if not 0.0 <= r.split_join_touching < 1.0:
        raise SdfsegError(f"config key 'render.split_join_touching': expected a share in [0, 1) (0 = off), "
                          f"got {r.split_join_touching}")
    if r.split_bisect < 0:
        raise SdfsegError(f"config key 'render.split_bisect': expected >= 0 (0 = off), got {r.split_bisect}")
    if r.split_grid < 0 or not 0.0 <= r.split_link <= 1.0:
        raise SdfsegError(f"config keys 'render.split_grid' (>= 0, 0 = off), 'render.split_link' (a share in [0, 1]): "
                          f"got {r.split_grid}, {r.split_link}")
    if r.split_grid > 0 and r.vote_grid <= 0:
        raise SdfsegError(f"config key 'render.split_grid' is {r.split_grid}: the split step follows the ownership "
                          "vote; set 'render.vote_grid' > 0 too, or split_grid to 0")
    if r.vote_min_island < 0:
        raise SdfsegError(f"config key 'render.vote_min_island': expected a voxel count >= 0 (0 = off), "
                          f"got {r.vote_min_island}")
    if r.vote_kernel < 1 or r.vote_kernel % 2 == 0:
        raise SdfsegError(f"config key 'render.vote_kernel': expected an odd number >= 1, got {r.vote_kernel}")
    if r.vote_max_gap is not None and r.vote_max_gap < 0:
        raise SdfsegError(f"config key 'render.vote_max_gap': expected a distance >= 0 or null, got {r.vote_max_gap}")
    if not 0.5 <= r.vote_object_share < 1.0:
        raise SdfsegError(f"config key 'render.vote_object_share': expected a share in [0.5, 1), got {r.vote_object_share}")
    if cfg.data.image_size is not None and (len(cfg.data.image_size) != 2 or min(cfg.data.image_size) <= 0):
        raise SdfsegError(f"config key 'data.image_size': expected [height, width], got {cfg.data.image_size}")


def _validate_ranges(cfg: Config) -> None:
    """Value ranges of the training, model, sampler, loss and render keys, so a bad value stops the run
    at start-up (not after training)."""
    t, m, s, r, d = cfg.train, cfg.model, cfg.sampler, cfg.render, cfg.data
    positive = {"train.iterations": t.iterations, "train.rays": t.rays, "train.lr": t.lr, "train.grid_lr": t.grid_lr,
                "train.lr_final_ratio": t.lr_final_ratio, "train.beta_lr": t.beta_lr,
                "train.eikonal_points": t.eikonal_points, "train.checkpoint_every": t.checkpoint_every,
                "train.log_every": t.log_every, "train.keyframe_ratio": t.keyframe_ratio,
                "model.hidden_dim": m.hidden_dim, "model.feature_dim": m.feature_dim,
                "model.color_hidden_dim": m.color_hidden_dim, "model.ownership_tau": m.ownership_tau,
                "model.ownership_tau_final": m.ownership_tau_final, "model.beta_init": m.beta_init,
                "model.beta_final": m.beta_final, "loss.cluster_temperature": cfg.loss.cluster_temperature,
                "model.object_radius": m.object_radius, "model.fd_eps": m.fd_eps,
                "model.semantic_grid_max_resolution": m.semantic_grid_max_resolution,
                "model.offset_grid_max_resolution": m.offset_grid_max_resolution,
                "model.encoding.n_levels": m.encoding.n_levels,
                "model.encoding.n_features_per_level": m.encoding.n_features_per_level,
                "model.encoding.log2_hashmap_size": m.encoding.log2_hashmap_size,
                "model.encoding.base_resolution": m.encoding.base_resolution,
                "sampler.n_coarse": s.n_coarse, "sampler.n_depth_near": s.n_depth_near, "sampler.depth_std": s.depth_std,
                "sampler.grid_update_every": s.grid_update_every,
                "render.chunk": r.chunk, "render.surface_samples": r.surface_samples, "data.max_frames": d.max_frames, "data.sphere_radius": d.sphere_radius}
    for key, val in positive.items():
        if val is not None and not val > 0:
            raise SdfsegError(f"config key '{key}': must be positive, got {val}")
    non_negative = {"train.label_rays": t.label_rays, "train.extra_views": t.extra_views,
                    "train.extra_rays": t.extra_rays, "train.segmentation_start": t.segmentation_start,
                    "train.max_bad_steps": t.max_bad_steps, "train.replace_prob": t.replace_prob,
                    "train.distinction_start": t.distinction_start, "model.n_hidden_layers": m.n_hidden_layers,
                    "model.n_frequencies": m.n_frequencies, "model.color_layers": m.color_layers,
                    "model.semantic_grid_levels": m.semantic_grid_levels,
                    "model.offset_grid_levels": m.offset_grid_levels, "model.appearance_dim": m.appearance_dim,
                    "train.depth_rays": t.depth_rays, "train.edge_rays": t.edge_rays,
                    "train.depth_edge_rays": t.depth_edge_rays, "sampler.n_importance": s.n_importance, "sampler.n_rounds": s.n_rounds,
                    "sampler.n_depth_uniform": s.n_depth_uniform, "sampler.carve_samples": s.carve_samples, "render.merge_share": r.merge_share}
    non_negative.update({f"loss.{k}": v for k, v in dataclasses.asdict(cfg.loss).items()})
    for key, val in non_negative.items():
        if val is not None and not val >= 0:
            raise SdfsegError(f"config key '{key}': must be >= 0, got {val}")
    at_most_one = {"train.keyframe_ratio": t.keyframe_ratio, "train.replace_prob": t.replace_prob,
                   "train.lr_final_ratio": t.lr_final_ratio, "data.sphere_radius": d.sphere_radius}
    for key, val in at_most_one.items():
        if val > 1:
            raise SdfsegError(f"config key '{key}': expected a value in (0, 1], got {val}")
    if t.label_rays > t.rays:
        raise SdfsegError(f"config key 'train.label_rays': at most train.rays ({t.rays}), got {t.label_rays}")
    if t.edge_rays > t.rays - t.label_rays:
        raise SdfsegError(f"config key 'train.edge_rays': at most train.rays - train.label_rays "
                          f"({t.rays - t.label_rays}), got {t.edge_rays}")
    if m.encoding.max_resolution < m.encoding.base_resolution:
        raise SdfsegError(f"config key 'model.encoding.max_resolution': expected >= base_resolution "
                          f"({m.encoding.base_resolution}), got {m.encoding.max_resolution}")
    if s.grid_resolution != 0 and s.grid_resolution < 9:
        raise SdfsegError(f"config key 'sampler.grid_resolution': expected 0 (off) or >= 9, got {s.grid_resolution}")
    if s.carve_samples > 0 and s.grid_resolution == 0:
        raise SdfsegError("config key 'sampler.carve_samples': needs the grid of sampler.grid_resolution "
                          f"(> 0, got 0) to find surfaces in front of the sensor depth; got {s.carve_samples}")
    if r.beta is not None and not r.beta > 0:
        raise SdfsegError(f"config key 'render.beta': expected a Laplace scale > 0 or null, got {r.beta}")
    if r.carve_margin < 0:
        raise SdfsegError(f"config key 'render.carve_margin': expected a depth margin >= 0 (0 = off), got {r.carve_margin}")
    if not 0 < r.carve_share <= 1:
        raise SdfsegError(f"config key 'render.carve_share': expected a share in (0, 1], got {r.carve_share}")
    if r.grid_resolution < 16:
        raise SdfsegError(f"config key 'render.grid_resolution': expected >= 16, got {r.grid_resolution}")
    if r.mesh_resolution < 16:
        raise SdfsegError(f"config key 'render.mesh_resolution': expected >= 16, got {r.mesh_resolution}")
    if r.merge_share >= 1:
        raise SdfsegError(f"config key 'render.merge_share': expected a share in [0, 1) (0 = off), got {r.merge_share}")
    if r.mesh_support < -1:
        raise SdfsegError(f"config key 'render.mesh_support': expected -1 (off) or voxels >= 0, got {r.mesh_support}")
    if not 0 <= r.object_mask_share <= 1:
        raise SdfsegError(f"config key 'render.object_mask_share': expected a share in [0, 1] (0 = off), "
                          f"got {r.object_mask_share}")


def _validate_features(f: FeatureConfig) -> None:
    """Ranges of the feature head keys (checked even when the head is disabled)."""
    sizes = {"features.dim": f.dim, "features.hidden": f.hidden, "features.rays": f.rays,
             "features.head_iterations": f.head_iterations,
             "features.loss.min_rays": f.loss.min_rays, "features.loss.knn": f.loss.knn,
             "features.loss.pairs_per_mask": f.loss.pairs_per_mask}
    for key, val in sizes.items():
        if val <= 0:
            raise SdfsegError(f"config key '{key}': must be positive, got {val}")
    non_negative = {"features.layers": f.layers, "features.num_freqs": f.num_freqs, "features.start": f.start,
                    "features.grid_levels": f.grid_levels,
                    "features.loss.weight": f.loss.weight, "features.loss.norm_weight": f.loss.norm_weight,
                    "features.loss.decay": f.loss.decay, "features.loss.euclidean_weight": f.loss.euclidean_weight}
    for key, val in non_negative.items():
        if val < 0:
            raise SdfsegError(f"config key '{key}': must be >= 0, got {val}")
    if f.loss.tau <= 0 or f.lr <= 0 or f.grid_lr <= 0:
        raise SdfsegError("config keys 'features.loss.tau', 'features.lr', 'features.grid_lr': must be positive")


def _validate_codebook(c: CodebookConfig) -> None:
    """Ranges of the codebook method's keys (checked whatever the method)."""
    positive = {"codebook.size": c.size, "codebook.dim": c.dim, "codebook.hidden": c.hidden, "codebook.lr": c.lr,
                "codebook.grid_lr": c.grid_lr, "codebook.mesh_resolution": c.mesh_resolution}
    for key, val in positive.items():
        if val <= 0:
            raise SdfsegError(f"config key '{key}': must be positive, got {val}")
    non_negative = {"codebook.layers": c.layers, "codebook.num_freqs": c.num_freqs,
                    "codebook.grid_levels": c.grid_levels, "codebook.class_weight": c.class_weight,
                    "codebook.concentration": c.concentration, "codebook.contrastive": c.contrastive}
    for key, val in non_negative.items():
        if val < 0:
            raise SdfsegError(f"config key '{key}': must be >= 0, got {val}")
    if not 0 < c.filter_tau <= 1 or not 0 <= c.filter_start <= 1:
        raise SdfsegError(f"config keys 'codebook.filter_tau' (in (0, 1]) and 'codebook.filter_start' (in [0, 1]): "
                          f"got {c.filter_tau}, {c.filter_start}")


def to_dict(cfg: Any) -> dict:
    """Plain nested dict of a config dataclass (for YAML dumps)."""
    return dataclasses.asdict(cfg)


def dump_yaml(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
