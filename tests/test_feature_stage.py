"""Head-only stage (sdfseg.methods.hierarchy.stage, tools/train_features.py) on a 2-iteration tiny run."""

import pytest
import torch
from _helpers import HEAD, TINY, demo_config, tiny_scene

from sdfseg.cli import train_features
from sdfseg.errors import SdfsegError, run_cli
from sdfseg.methods.hierarchy.run import load_feature_run, render_frame
from sdfseg.methods.hierarchy.stage import FEATURE_PREFIX, train_feature_head
from sdfseg.training.trainer import Trainer

STAGE = [h for h in HEAD if h != "features.enabled=true"] + ["features.head_iterations=40"]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("stage")
    scene = tiny_scene(root / "scene")
    cfg = demo_config(TINY + ["train.iterations=2"], scene, root / "plain")
    Trainer(cfg).fit(progress=False)
    (root / "plain" / "channels.json").write_text('{"channels": []}')
    return root / "plain"


def _state(run):
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)


def _same(a, b) -> bool:
    """Equal state-dict entries: tensors bit for bit, the schedule (extra state) by value."""
    return torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b


def test_head_stage_freezes_backbone_and_trains_head(source, tmp_path):
    out = tmp_path / "head"
    stats = train_feature_head(source, out, STAGE, progress=False)
    src, new = _state(source)["model"], _state(out)["model"]
    head = [k for k in new if k.startswith(FEATURE_PREFIX)]
    assert head and not any(k.startswith(FEATURE_PREFIX) for k in src)      # the plain run had no head
    for k, v in src.items():                                               # backbone copied bit for bit
        assert _same(v, new[k]), k
    assert _state(out)["step"] == _state(source)["step"] == 2
    assert (out / "channels.json").read_text() == '{"channels": []}'
    assert not (out / "ownership.npz").exists()
    # the head learned: its contrastive loss over the run is lower at the end than for the untrained head
    fresh = tmp_path / "fresh"
    first = train_feature_head(source, fresh, STAGE[:-1] + ["features.head_iterations=1"], progress=False)
    assert stats["feat_contrastive"] < first["feat_contrastive"]
    run = load_feature_run(out)                                            # answers queries like a joint run
    feats = render_frame(run, 1)["features"]
    assert feats.shape == (24, 32, 16) and torch.isfinite(torch.as_tensor(feats)).all()


def test_head_stage_is_deterministic(source, tmp_path):
    a = train_feature_head(source, tmp_path / "a", STAGE[:-1] + ["features.head_iterations=5"], progress=False)
    b = train_feature_head(source, tmp_path / "b", STAGE[:-1] + ["features.head_iterations=5"], progress=False)
    assert a["feat_contrastive"] == b["feat_contrastive"]
    sa, sb = _state(tmp_path / "a")["model"], _state(tmp_path / "b")["model"]
    assert all(_same(sa[k], sb[k]) for k in sa)


def test_head_stage_errors(source, tmp_path):
    with pytest.raises(SdfsegError, match="give one other than the source"):
        train_feature_head(source, source, STAGE)
    with pytest.raises(SdfsegError, match="features.detach_geometry"):
        train_feature_head(source, tmp_path / "x", STAGE + ["features.detach_geometry=false"])
    with pytest.raises(SdfsegError, match="last.pt: backbone does not match"):
        train_feature_head(source, tmp_path / "y", STAGE + ["model.hidden_dim=8"])
    with pytest.raises(SdfsegError, match="config.yaml: not found"):
        train_feature_head(tmp_path / "nothing", tmp_path / "z", STAGE)


def test_train_features_cli(source, tmp_path, capsys):
    out = tmp_path / "cli"
    argv = [str(source), str(out), "--no-progress", "--set", *STAGE[:-1], "features.head_iterations=2"]
    assert train_features.main(argv) == 0
    assert "feature head trained" in capsys.readouterr().out and (out / "checkpoints" / "last.pt").exists()
    with pytest.raises(SystemExit) as e:
        run_cli(lambda: train_features.main([str(source), str(source)]))
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err.startswith("error: ") and len(err.splitlines()) == 1
