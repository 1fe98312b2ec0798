"""The methods behind one interface (:mod:`sdfseg.methods`): the move changed no result, and the trainer
trains a method it has never heard of."""

import json
import math

import pytest
import torch
from _helpers import ROOT
from method_fingerprint import CASES, all_fingerprints

from sdfseg.config import load_config
from sdfseg.errors import SdfsegError
from sdfseg.methods import create_method, method_name, method_names

GOLDEN = ROOT / "tests" / "data" / "method_fingerprints.json"
# Floats agree to this relative tolerance; label maps, metrics and channel tables exactly. Two CPUs of this
# project's machines (one with AVX-512 kernels) give the same code and packages weight sums and opacity sums
# up to 7.7e-5 apart (relative) after the six steps; the discrete outputs stayed identical.
REL_TOL = 5e-4


def _close(a, b, path):
    if isinstance(a, dict):
        assert set(a) == set(b), f"{path}: keys {sorted(set(a) ^ set(b))}"
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=REL_TOL, abs_tol=1e-6), f"{path}: {a} != {b}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def test_every_method_trains_renders_and_scores_as_before_the_move():
    """Weights after 6 steps (every tensor's sum and absolute sum), the raw renders of a test view, the
    label maps, metrics and channel table of the finished run, for ClusteringSDF, the two ObjectSDF++
    baselines, semantic mode and ClusteringSDF with the feature head, against the values the code wrote
    before the methods moved (tests/data/method_fingerprints.json). On one machine they are bit-identical;
    the float tolerance (``REL_TOL``) absorbs another CPU's rounding."""
    threads = torch.get_num_threads()
    try:
        now = all_fingerprints()
    finally:
        torch.set_num_threads(threads)
    golden = json.loads(GOLDEN.read_text())
    assert set(golden) == set(CASES)
    _close(golden, json.loads(json.dumps(now)), "fingerprint")


def test_methods_are_registered_and_resolved_by_name():
    assert {"clustering", "supervised", "semantic"} <= set(method_names())
    assert method_name(load_config(None)) == "clustering"
    assert method_name(load_config(None, ["train.mode=semantic"])) == "semantic"
    assert method_name(load_config(None, ["train.mode=semantic", "train.method=semantic"])) == "semantic"
    assert method_name(load_config(None, ["train.method=supervised", "train.mode=semantic"])) == "supervised"
    assert create_method(load_config(None)).free_channels
    assert not create_method(load_config(None, ["train.method=supervised"])).free_channels
    with pytest.raises(SdfsegError, match="'train.method': expected one of .*clustering.*got 'nope'"):
        load_config(None, ["train.method=nope"])
    with pytest.raises(SdfsegError, match="'train.mode'.*semantic"):
        load_config(None, ["train.method=semantic"])


def test_a_new_method_trains_without_touching_the_trainer(tmp_path):
    """A method registered from outside the package (here: every channel pulled towards a fixed one-hot
    target with a head of its own) trains through the unchanged trainer, and its head and state reach the
    checkpoint."""
    from _helpers import TINY, demo_config, tiny_scene
    from torch import nn

    from sdfseg.methods import Method, base, register
    from sdfseg.training.labels import instance_training_labels
    from sdfseg.training.trainer import Trainer

    class ToyHead(nn.Linear):
        def forward(self, feat, x):  # a head maps (geometry feature, point) to a point field
            return super().forward(feat)

    class Toy(Method):
        name = "toy_test_method"

        def heads(self, scene):
            return {"toy": ToyHead(self.cfg.model.feature_dim, 2)}

        def param_groups(self, model):
            return [{"params": list(model.heads["toy"].parameters()), "lr": 1e-2}]

        def training_labels(self, scene, k):
            return instance_training_labels(scene, self.cfg, None)

        def losses(self, model, out, batch, step):
            self.steps = getattr(self, "steps", 0) + 1
            return {"toy": (out["toy"] - 1.0).pow(2).mean() + (out["opacity"][:, 0] - 1.0).abs().mean()}

        def state_dict(self):
            return {"steps": self.steps}

        def channel_table(self, trainer):
            raise NotImplementedError

    register(Toy)
    try:
        scene = tiny_scene(tmp_path / "scene")
        t = Trainer(demo_config(TINY, scene, tmp_path / "run", "train.method=toy_test_method", "train.iterations=3",
                                "train.segmentation_start=0"))
        w0 = t.model.heads["toy"].weight.detach().clone()
        stats = t.fit(progress=False)
        assert "toy" in stats and not torch.equal(w0, t.model.heads["toy"].weight)
        state = torch.load(t.checkpoint_path, weights_only=True)
        assert state["method"] == {"steps": 3} and "heads.toy.weight" in state["model"]
    finally:
        base._REGISTRY.pop("toy_test_method", None)


def test_checkpoints_written_before_the_method_was_recorded_still_load(tmp_path):
    from _helpers import TINY, demo_config, tiny_scene

    from sdfseg.training.trainer import Trainer

    scene = tiny_scene(tmp_path / "scene")
    cfg = lambda: demo_config(TINY, scene, tmp_path / "run", "train.iterations=2")  # noqa: E731
    t = Trainer(cfg())
    t.fit(progress=False)
    state = torch.load(t.checkpoint_path, weights_only=True)
    del state["method_name"]
    state["format"] = 2
    torch.save(state, t.checkpoint_path)
    again = Trainer(cfg())
    again.load_checkpoint()
    assert again.step == 2
    for a, b in zip(t.model.parameters(), again.model.parameters()):
        assert torch.equal(a, b)


def _imported_modules(path, module):
    """Absolute names of the sdfseg modules ``path`` (module ``module``) imports, at any depth."""
    import ast

    is_pkg = path.name == "__init__.py"
    package = module.split(".") if is_pkg else module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            name = ".".join(base + ([node.module] if node.module else []))
            found.update(f"{name}.{a.name}" if not node.module else name for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m.startswith("sdfseg")}


def test_layers_name_no_method():
    """The backbone (sdfseg/core) imports neither training nor methods; training and the run loader use
    only the method registry and its output table, never a method by name."""
    src = ROOT / "sdfseg"
    files = {p: "sdfseg." + ".".join(p.relative_to(src).with_suffix("").parts).removesuffix(".__init__")
             for p in src.rglob("*.py")}
    allowed = {"sdfseg.methods", "sdfseg.methods.base", "sdfseg.methods.outputs"}
    for path, module in files.items():
        deps = _imported_modules(path, module)
        if module.startswith("sdfseg.core."):
            bad = {d for d in deps if d.split(".")[1] not in ("core", "config", "errors", "io", "progress")}
            assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"
        if module.startswith("sdfseg.training.") or module == "sdfseg.runs":
            bad = {d for d in deps if d.startswith("sdfseg.methods") and d not in allowed}
            assert not bad, f"{path.relative_to(ROOT)} names a method: {sorted(bad)}"
    assert len([m for m in files.values() if m.startswith("sdfseg.training.")]) >= 6  # the walk found them
