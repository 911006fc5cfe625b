"""train/onednn_cache.py: oneDNN keeps the kernels of every batch shape in the training and translation processes,
unless the user chose a capacity. oneDNN reads its capacity once per process, so each effect is checked in a
fresh process, through oneDNN's own report of each primitive it creates (`ONEDNN_VERBOSE=profile_create`: a
`create:cache_hit` or `create:cache_miss` line)."""

import json
import subprocess
import sys

import pytest
import torch

from tests.helpers import REPO_ROOT
from train import onednn_cache

# oneDNN's fp32 linear with a packed weight (the model's decoding path, `hf_vanilla_transformer/onednn.py`): one
# primitive per number of rows. 1 row, then 1,099 other row counts (more than oneDNN's default cache holds), then
# 1 row again: its primitive is still cached only if the cache has room for all of them. Packing a weight is a
# oneDNN primitive too: `late` uses oneDNN once before asking for room.
CHILD = """
import json, sys, torch
from train.onednn_cache import make_room_for_batch_shapes
linear = lambda x, w: torch.ops.mkldnn._linear_pointwise(x, w, None, "none", [], "")
pack = lambda w: torch.ops.mkldnn._reorder_linear_weight(w, None)
if sys.argv[1] == "late":
    linear(torch.randn(3, 4), pack(torch.randn(8, 4)))
state = make_room_for_batch_shapes() if sys.argv[1] != "default" else "default"
if sys.argv[2:] == ["state-only"]:
    sys.exit(print(json.dumps({"state": state})))
weight = pack(torch.randn(8, 4))
for rows in [1, *range(2, 1100), 1]:
    linear(torch.randn(rows, 4), weight)
print(json.dumps({"state": state}))
"""


def run_child(mode: str, *args: str, **env) -> tuple[dict, list[str]]:
    """The child's result and oneDNN's reports of the linear primitives it created, in order."""
    environment = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "OMP_NUM_THREADS": "1", **env}
    command = [sys.executable, "-c", CHILD, mode, *args]
    output = subprocess.run(command, cwd=REPO_ROOT, env=environment, capture_output=True, text=True)
    assert output.returncode == 0, output.stderr
    lines = output.stdout.strip().splitlines()
    reports = [line.split(",") for line in lines if line.startswith("onednn_verbose,")]
    creations = [fields[3] for fields in reports if fields[3].startswith("create:") and fields[5] == "inner_product"]
    return json.loads(lines[-1]), creations


needs_onednn = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")


@needs_onednn
def test_every_shape_stays_compiled_with_room_made():
    state, creations = run_child("room", ONEDNN_VERBOSE="profile_create")
    assert len(creations) == 1100  # one primitive per linear call: the check sees every creation
    assert creations[-1] == "create:cache_hit"  # the first shape, 1,099 shapes later
    assert state["state"].startswith(f"{onednn_cache.CAPACITY} primitives")


@needs_onednn
def test_without_room_oneDNN_forgets_the_first_shape():
    """The reason for the module, and the proof that the check above can fail: oneDNN's default capacity."""
    _, creations = run_child("default", ONEDNN_VERBOSE="profile_create")
    assert creations[-1] == "create:cache_miss"


@needs_onednn
def test_too_late_once_oneDNN_has_run():
    """oneDNN reads the capacity at its first primitive: the docstring's warning, held to it."""
    _, creations = run_child("late", ONEDNN_VERBOSE="profile_create")
    assert creations[-1] == "create:cache_miss"


@pytest.mark.parametrize("name", [onednn_cache.CAPACITY_VARIABLE, onednn_cache.OLD_CAPACITY_VARIABLE])
def test_a_capacity_the_user_chose_is_left_alone(name):
    state, _ = run_child("room", "state-only", **{name: "64"})
    assert state["state"] == f"as set by the user ({name}=64)"


def test_the_setting_goes_into_the_environment_it_is_given(monkeypatch):
    monkeypatch.setattr(onednn_cache, "_state", {})
    environ = {}
    onednn_cache.make_room_for_batch_shapes(environ)
    assert environ == {onednn_cache.CAPACITY_VARIABLE: str(onednn_cache.CAPACITY)}
    user = {onednn_cache.CAPACITY_VARIABLE: "2048"}
    monkeypatch.setattr(onednn_cache, "_state", {})
    onednn_cache.make_room_for_batch_shapes(user)
    assert user == {onednn_cache.CAPACITY_VARIABLE: "2048"}


def test_results_record_the_cache():
    from train.precision import machine_description

    assert machine_description()["onednn_primitive_cache"] == onednn_cache.primitive_cache_state()
