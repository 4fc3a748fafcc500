"""Shared fixtures. Tests use tiny synthetic models/data except where a real dataset is the point
(loaders, converters, the workflow), which read it through $CLAIMBENCH_DATA like the project does."""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
# a relative data search path (.ci/run sets ../shared/data) means relative to where pytest started,
# also for the tests that change into a temporary directory
if os.environ.get("CLAIMBENCH_DATA"):
    os.environ["CLAIMBENCH_DATA"] = os.pathsep.join(
        str(Path(p).resolve()) for p in os.environ["CLAIMBENCH_DATA"].split(os.pathsep) if p)


@pytest.fixture
def tiny_hm():
    """A float64 Helmholtz machine small enough for exact enumeration: x 5 bits, h 3 + 2 bits."""
    from bench.models.helmholtz import HelmholtzMachine

    torch.manual_seed(0)
    model = HelmholtzMachine([5, 3, 2], seeds=[0], init="glorot_normal", bias=0.0).double()
    with torch.no_grad():  # make the posterior non-trivial
        for p in model.parameters():
            p.add_(0.8 * torch.randn_like(p))
    return model


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real data folder on the project's search path ($CLAIMBENCH_DATA, then data/) that holds
    the distributed npz files and the upstream originals (.ci/run points it at ../shared/data)."""
    from bench.engine.data import search_path

    for d in search_path():
        if (d / "uci_dna.npz").is_file() and (d / "orig" / "frey_rawface.mat").is_file():
            return d
    pytest.fail("no data folder with the distributed npz files and orig/ on the search path: "
                "set CLAIMBENCH_DATA (e.g. export CLAIMBENCH_DATA=../shared/data), as .ci/run does")


def copy_project(dest: Path, names: tuple[str, ...]) -> Path:
    """The named files and folders of the checkout copied into dest (mtimes kept), for tests that
    run the workflow or the command line as a user would, away from the checkout."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / name)
    return dest


# torchmetrics (and laplace-torch through it) imports torchvision when its distribution is installed;
# the CPU torch here cannot load the CUDA torchvision that backpack pulls in (../shared/STACK.md,
# section 5): a reference that needs them runs in a subprocess whose script starts with this, which
# hides torchvision (neither reference uses it).
HIDE_TORCHVISION = """
import importlib.abc, importlib.metadata, json, sys
import torch

class HideTorchvision(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "torchvision":
            raise ModuleNotFoundError(name)

version = importlib.metadata.version
def without_torchvision(name):
    if name == "torchvision":
        raise importlib.metadata.PackageNotFoundError(name)
    return version(name)

sys.meta_path.insert(0, HideTorchvision())
importlib.metadata.version = without_torchvision
"""

TOY_CLAIM = {  # the smallest valid claim; tests extend it
    "id": "toy",
    "statement": "a toy claim",
    "dataset": "uci_dna",
    "model": {"family": "helmholtz", "layers": [180, 10]},
    "methods": {"A": {"method": "rws", "k": 2}, "B": {"method": "ws"}},
    "verdict": {"rule": "better", "pairs": [["A", "B"]]},
    "profiles": {"quick": {"seeds": [0, 1], "epochs": 1, "batch_size": 50}},
}


def write_claims(folder: Path, *specs: dict, name: str = "toy.yaml") -> Path:
    """The claims written as one YAML file of a claims folder, which is returned."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(yaml.safe_dump(list(specs), sort_keys=False, allow_unicode=True))
    return folder


def load_toy(folder: Path, spec: dict, change=None) -> dict:
    """A copy of `spec`, changed in place by `change(spec)`, written and loaded as the catalogue."""
    from bench.claims.catalog import load_claims

    spec = copy.deepcopy(spec)
    if change is not None:
        change(spec)
    return load_claims(write_claims(folder, spec))


def float64_classifier(seeds: list[int], layers: tuple[int, ...]):
    """A float64 ReLU MLP classifier (Kaiming initialisation), one replica per seed."""
    from bench.models.mlp import MLP

    return MLP(list(layers), seeds, activations="relu", loss="categorical", init="kaiming").double()


def classification_data(replicas: int, n: int = 40, d: int = 6, classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """n random U(0, 1) inputs with random labels, the same for every replica: (R, n, d), (R, n)."""
    g = torch.Generator().manual_seed(7)
    x = torch.rand(n, d, generator=g, dtype=torch.float64)
    y = torch.randint(classes, (n,), generator=g)
    return x.expand(replicas, -1, -1).contiguous(), y.expand(replicas, -1).contiguous()


def assert_blind_to_hidden_values(outputs, data, same, moved, methods) -> None:
    """A method fit to incomplete data never reads the values behind its mask: `outputs(x, name)`
    returns (step outputs dict, parameters, *more tensors) after a few steps on x; on `same` (other
    values at the masked entries) every output is identical, on `moved` (an observed value changed)
    each step output and extra tensor differs."""
    for name in methods:
        first, again, changed = outputs(data, name), outputs(same, name), outputs(moved, name)
        for key in first[0]:
            torch.testing.assert_close(first[0][key], again[0][key], rtol=0, atol=0)
            assert not torch.equal(first[0][key], changed[0][key])
        for p, q in zip(first[1], again[1]):
            torch.testing.assert_close(p, q, rtol=0, atol=0)
        for a, b, c in zip(first[2:], again[2:], changed[2:]):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
            assert not torch.equal(a, c)
