"""The methods behind one interface (:mod:`sdfseg.methods`): the move changed no result, and the trainer
trains a method it has never heard of."""

import json
import math

import pytest
import torch

from sdfseg.config import load_config
from sdfseg.errors import SdfsegError
from sdfseg.methods import create_method, method_name, method_names

from _helpers import ROOT
from method_fingerprint import CASES, all_fingerprints

GOLDEN = ROOT / "tests" / "data" / "method_fingerprints.json"


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
        assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9), f"{path}: {a} != {b}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def test_every_method_trains_renders_and_scores_as_before_the_move():
    """Weights after 6 steps (every tensor's sum and absolute sum), the raw renders of a test view, the
    label maps, metrics and channel table of the finished run, for ClusteringSDF, the two ObjectSDF++
    baselines, semantic mode and ClusteringSDF with the feature head, against the values the code wrote
    before the methods moved (tests/data/method_fingerprints.json). Locally they are bit-identical; the
    tolerance (1e-6 relative) only absorbs another CPU's rounding."""
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
