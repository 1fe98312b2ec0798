"""The installed commands (``sdfseg-train`` etc., setup.cfg's console scripts) and the configs an installed
package carries, so the package works without the repository checkout."""

import configparser
import importlib
import subprocess
import sys

import pytest
from _helpers import ROOT

from sdfseg.config import bundled_config, load_config


def _entry_points():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    lines = [ln.strip() for ln in cfg["options.entry_points"]["console_scripts"].splitlines() if ln.strip()]
    return dict(tuple(x.strip() for x in ln.split("=")) for ln in lines)


def test_every_console_script_resolves_to_a_command():
    eps = _entry_points()
    assert {"sdfseg-train", "sdfseg-eval", "sdfseg-mesh", "sdfseg-view", "sdfseg-segment2d"} <= set(eps)
    for name, target in eps.items():
        module, func = target.split(":")
        mod = importlib.import_module(module)
        assert callable(getattr(mod, func)), name
        assert callable(getattr(mod, "main")), name  # what tools/<name>.py and the tests call


def test_a_command_runs_outside_the_checkout(tmp_path):
    """``python -m sdfseg.cli.extract_mesh`` (what sdfseg-mesh runs) from a folder with no confs/ or tools/;
    a bad argument is still one line."""
    r = subprocess.run([sys.executable, "-m", "sdfseg.cli.extract_mesh", "--help"], cwd=tmp_path,
                       capture_output=True, text=True)
    assert r.returncode == 0 and "--format" in r.stdout, r.stderr
    r = subprocess.run([sys.executable, "-m", "sdfseg.cli.extract_mesh", str(tmp_path / "nope"), "--format", "stl"],
                       cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("error: --format") and len(r.stderr.splitlines()) == 1
    r = subprocess.run([sys.executable, "-m", "sdfseg.cli.extract_mesh", str(tmp_path / "nope"), "--set",
                        "model.num_channels=4"], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("error: --set model.num_channels=4: expected render.KEY")


def test_installed_configs_are_found_by_name(tmp_path, monkeypatch):
    share = tmp_path / "prefix" / "share" / "sdfseg" / "confs"
    share.mkdir(parents=True)
    for name in ("demo.yaml", "scannet.yaml"):
        (share / name).write_text((ROOT / "confs" / name).read_text())
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "prefix"))
    monkeypatch.chdir(tmp_path)  # no confs/ here
    assert bundled_config("demo.yaml") == share / "demo.yaml"
    assert bundled_config("confs/scannet.yaml") == share / "scannet.yaml"
    assert load_config("confs/scannet.yaml").train.iterations == load_config(ROOT / "confs" / "scannet.yaml").train.iterations
    assert bundled_config("other/demo.yaml").name == "demo.yaml" and not bundled_config("other/demo.yaml").exists()
    with pytest.raises(Exception, match="missing.yaml: config file not found"):
        load_config("missing.yaml")
