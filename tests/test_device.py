"""Device correctness: the hash-grid backend choice, random streams, checkpoints across devices and
backends. CUDA-only tests skip cleanly without a GPU; the tcnn choice is tested with a mocked
availability."""

import pytest
import torch
from _helpers import DEVICE, HEAD, TINY, demo_config, tiny_scene

from sdfseg.config import load_config
from sdfseg.core.fields import encodings
from sdfseg.core.fields.encodings import resolve_backend
from sdfseg.core.model import SceneModel
from sdfseg.errors import SdfsegError
from sdfseg.training.trainer import Trainer

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return tiny_scene(tmp_path_factory.mktemp("device") / "scene")


def test_auto_backend_never_picks_tcnn_for_a_cpu_model(monkeypatch, scene, tmp_path):
    monkeypatch.setattr(encodings, "tcnn_available", lambda: True)  # as on a GPU machine with tinycudann
    assert resolve_backend("auto", "cpu") == "torch"
    assert resolve_backend("auto", torch.device("cuda", 0)) == "tcnn"
    assert resolve_backend("torch", "cuda") == "torch" and resolve_backend("tcnn", "cpu") == "tcnn"
    cfg = demo_config(TINY, scene, tmp_path / "run", "train.device=cpu", "model.encoding.backend=auto")
    trainer = Trainer(cfg)
    assert trainer.model.hash_backend == "torch"
    trainer.write_config()  # the run records the backend its weights are laid out for
    assert load_config(tmp_path / "run" / "config.yaml").model.encoding.backend == "torch"


def test_checkpoint_of_another_backend_is_refused(scene, tmp_path):
    trainer = Trainer(demo_config(TINY, scene, tmp_path / "run", "train.iterations=1"))
    trainer.fit(progress=False)
    state = torch.load(trainer.checkpoint_path, weights_only=True)
    assert state["hash_backend"] == "torch" and state["format"] == 3 and state["method_name"] == "clustering"
    state["hash_backend"] = "tcnn"
    torch.save(state, trainer.checkpoint_path)
    again = Trainer(demo_config(TINY, scene, tmp_path / "run", "train.iterations=1"))
    with pytest.raises(SdfsegError, match="trained with the 'tcnn' backend, this model uses 'torch'"):
        again.load_checkpoint()


def test_feature_head_init_leaves_every_random_stream_alone():
    def streams(extra):
        torch.manual_seed(0)
        SceneModel(load_config(None, TINY + extra), 5)
        cpu = torch.get_rng_state()
        gpu = torch.cuda.get_rng_state() if torch.cuda.is_available() else None
        return cpu, gpu

    (cpu_a, gpu_a), (cpu_b, gpu_b) = streams([]), streams(HEAD)
    assert torch.equal(cpu_a, cpu_b)
    assert gpu_a is None or torch.equal(gpu_a, gpu_b)


def test_format_1_checkpoint_loads_with_the_end_of_training_schedule(scene, tmp_path):
    """Checkpoints written before the schedule was stored: the uninterrupted run's end state is derived."""
    trainer = Trainer(demo_config(TINY, scene, tmp_path / "run", "train.iterations=4"))
    trainer.fit(progress=False)
    assert trainer.model.progress == 3 / 4  # the progress of the last step trained
    state = torch.load(trainer.checkpoint_path, weights_only=True)
    del state["format"], state["hash_backend"], state["model"]["_extra_state"]
    torch.save(state, trainer.checkpoint_path)
    old = Trainer(demo_config(TINY, scene, tmp_path / "run", "train.iterations=4"))
    assert old.model.progress == 1.0  # a fresh model
    old.load_checkpoint()
    assert old.model.progress == 3 / 4 and float(old.model.beta()) == float(trainer.model.beta())


@cuda
def test_resume_on_cuda_restores_the_cuda_random_stream(scene, tmp_path):
    cfg = lambda d: demo_config(TINY, scene, tmp_path / d, "train.iterations=4", "train.device=cuda")  # noqa: E731
    straight = Trainer(cfg("a"))
    straight.fit(progress=False)
    killed = Trainer(cfg("b"))
    killed.train_step()
    killed.train_step()
    killed.save_checkpoint()
    assert "cuda_rng" in torch.load(killed.checkpoint_path, weights_only=True)
    torch.cuda.manual_seed(123)  # a fresh process would not share the stream either
    resumed = Trainer(cfg("b"))
    resumed.fit(resume=True, progress=False)
    for a, b in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.allclose(a, b, atol=1e-5)


@cuda
def test_sam_nms_stand_in_on_cuda():
    from sdfseg.data.labels2d.sam import batched_nms

    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]], dtype=torch.float).cuda()
    keep = batched_nms(boxes, torch.tensor([0.5, 0.9, 0.8, 0.1]).cuda(), torch.tensor([0, 0, 1, 0]).cuda(), 0.7)
    assert keep.device.type == "cuda" and keep.tolist() == [1, 2, 3]


def test_test_device_is_the_configured_one(scene, tmp_path):
    trainer = Trainer(demo_config(TINY, scene, tmp_path / "run"))
    assert next(trainer.model.parameters()).device.type == DEVICE.type


def test_deterministic_kernels_only_on_cuda_and_only_when_asked(monkeypatch):
    """``train.deterministic`` switches torch to its deterministic kernels for a CUDA run (the kill -9 and
    --resume bit-identity), and leaves the process alone on the CPU or when off."""
    from sdfseg.training.trainer import use_deterministic_kernels

    before = torch.are_deterministic_algorithms_enabled()
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    assert not use_deterministic_kernels(torch.device("cpu"), True)
    assert not use_deterministic_kernels(torch.device("cuda"), False)
    assert torch.are_deterministic_algorithms_enabled() == before
    assert "CUBLAS_WORKSPACE_CONFIG" not in __import__("os").environ
    if DEVICE.type == "cuda":
        try:
            assert use_deterministic_kernels(DEVICE, True)
            assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
            assert __import__("os").environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        finally:
            torch.use_deterministic_algorithms(before)
