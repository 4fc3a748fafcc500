"""The convnet family (LeNet-5, ResNet-20), the optimizers that train it, LARS's trust ratio on a
convolution kernel, the CIFAR-10 / SVHN registration and the claim checks that refuse what cannot run."""

from __future__ import annotations

import copy
import io
import pickle
import tarfile

import numpy as np
import pytest
import scipy.io
import torch
from torch import nn

from bench.claims.catalog import expand
from bench.core.errors import ConfigError, DatasetNotFound
from bench.engine import data
from bench.engine.methods import get_method
from bench.models import build_model
from bench.models.convnet import ConvNet
from bench.nn import noise
from tests.conftest import load_toy

LENET = {"family": "convnet", "arch": "lenet5", "input_shape": [1, 28, 28]}
RESNET = {"family": "convnet", "arch": "resnet20", "input_shape": [3, 32, 32]}


def _replica_count(model: nn.Module) -> int:
    return sum(p[0].numel() for p in model.parameters())


def test_lenet5_shapes_and_parameter_count():
    """61,706 = C1 6*(25+1) + C3 16*(6*25+1) + C5 120*(400+1) + F6 84*(120+1) + 10*(84+1): LeNet-5
    with a full C3 and untrained pooling, on 28x28 padded by 2 (LeCun et al. 1998's 32x32 field)."""
    model = build_model(LENET, [0, 1, 2])
    assert _replica_count(model) == 156 + 2416 + 48120 + 10164 + 850 == 61706
    assert model(torch.rand(3, 7, 784)).shape == (3, 7, 10)


def test_resnet20_shapes_and_parameter_count():
    """He et al. (2016) Table 6: 0.27M parameters with batch norm. Without it: 19 bias-free 3x3
    convs (432 + 6 x 2304 + 4608 + 5 x 9216 + 18432 + 5 x 36864) and the dense 64 -> 10 with bias."""
    model = build_model(RESNET, [0, 1])
    convs = [w for w in model.weights if w.dim() == 5]
    assert len(convs) == 19 and len(model.weights) == 20
    assert _replica_count(model) == 432 + 6 * 2304 + 4608 + 5 * 9216 + 18432 + 5 * 36864 + 650 == 268346
    assert model(torch.rand(2, 4, 3072)).shape == (2, 4, 10)


def test_lenet5_matches_torch_layers_per_replica():
    """The grouped-convolution forward equals, for every replica, torch.nn's layers holding that
    replica's weights (float64): replicas never mix."""
    torch.manual_seed(0)
    model = build_model(LENET, [3, 4]).double()
    x = torch.rand(2, 5, 784, dtype=torch.float64)
    w, b = model.weights, model.biases
    for r in range(2):
        ref = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                            nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                            nn.Linear(84, 10)).double()
        layers = [m for m in ref if isinstance(m, nn.Conv2d | nn.Linear)]
        with torch.no_grad():
            for layer, wi, bi in zip(layers, w, b):
                layer.weight.copy_(wi[r])
                layer.bias.copy_(bi[r])
        torch.testing.assert_close(model(x)[r], ref(x[r].view(5, 1, 28, 28)), rtol=1e-12, atol=1e-12)


def test_resnet20_replica_alone_equals_replica_beside_others():
    """Seed 5 built and run alone gives its outputs among other seeds (initialisation and forward
    per replica), and every block starts as its shortcut (second conv zero)."""
    x = torch.rand(2, 3, 3072, dtype=torch.float64)
    both = build_model(RESNET, [4, 5]).double()
    alone = build_model(RESNET, [5]).double()
    torch.testing.assert_close(both(x)[1], alone(x[1:])[0], rtol=1e-10, atol=1e-10)
    assert all(not both.weights[i].any() for i in range(2, 19, 2))


def test_lars_trust_ratio_of_a_conv_kernel_float64():
    """One LARS step from zero velocity on a LeNet-5 conv kernel (R, 6, 1, 5, 5): per replica,
    W <- W - gamma lambda (g + beta W), lambda = eta ||W||_F / (||g||_F + beta ||W||_F) over the
    whole kernel (You et al. 2017, eq. 6), computed here in numpy."""
    model = build_model(LENET, [0, 1]).double()
    lars = get_method("lars")(model, lr=0.5, momentum=0.9, weight_decay=0.01, trust_coefficient=0.002)
    x, y = torch.rand(2, 8, 784, dtype=torch.float64), torch.randint(10, (2, 8))
    before = [w.detach().numpy().copy() for w in model.weights]
    lars.model.objective(x, y).sum().backward()
    grads = [w.grad.numpy().copy() for w in model.weights]
    lars.opt.step()
    for i in (0, 1):  # C1 and C3 kernels
        for r in range(2):
            w, g = before[i][r], grads[i][r]
            lam = 0.002 * np.linalg.norm(w) / (np.linalg.norm(g) + 0.01 * np.linalg.norm(w))
            np.testing.assert_allclose(model.weights[i][r].detach().numpy(), w - 0.5 * lam * (g + 0.01 * w),
                                       rtol=1e-12, atol=1e-15)
    assert lars.model.weights[0].grad.dim() == 5


@pytest.mark.parametrize("method, hparams, batch", [
    ("sgd", {"lr": 0.05}, 64), ("adam", {"lr": 2e-3}, 64), ("lamb", {"lr": 1e-2}, 64),
    ("entropy_sgd", {"lr": 0.5, "inner_steps": 2}, 128),
])
def test_tiny_lenet5_trains_on_mnist(data_dir, method, hparams, batch):
    """A few epochs on 512 real MNIST digits lower the training loss of two replicas well below
    log 10 (chance), and the classifier workload evaluates the convnet."""
    from bench.workloads import workload_for

    ds = data.load("mnist", download=False)
    x = torch.as_tensor(ds.x["train"][:512], dtype=torch.float32).div(255).expand(2, -1, -1).contiguous()
    y = torch.as_tensor(ds.y["train"][:512], dtype=torch.long).expand(2, -1).contiguous()
    torch.manual_seed(0)
    model = build_model(LENET, [0, 1])
    opt = get_method(method)(model, **hparams)
    start = model.objective(x, y).detach()
    for _ in range(6):
        for i in range(0, 512, batch):
            opt.step(x[:, i:i + batch], y[:, i:i + batch])
    end = model.objective(x, y).detach()
    assert torch.all(end < 0.5 * start) and torch.all(end < 1.0), (start, end)
    metrics = workload_for("convnet").metrics(model, opt, x, 1, y)
    assert torch.all(metrics["error"] < 0.3)


def test_deep_ensemble_of_convnets_members_per_seed():
    """Members 2..M are LeNet-5s of the model's configuration; seed 1's ensemble built alone equals
    its ensemble beside seed 0 (members drawn per replica), members differ, and the ensemble's
    predictive is the average of its members' softmaxes (bench.workloads.predictive)."""
    x, y = torch.rand(2, 6, 784, dtype=torch.float64), torch.randint(10, (2, 6))
    with noise.replica_noise([0, 1], "cpu"):
        both = get_method("deep_ensemble")(build_model(LENET, [0, 1]).double(), members=3)
    with noise.replica_noise([1], "cpu"):
        alone = get_method("deep_ensemble")(build_model(LENET, [1]).double(), members=3)
    assert all(isinstance(net, ConvNet) for net in both.networks) and len(both.networks) == 3
    for a, b in zip(both.networks, alone.networks):
        torch.testing.assert_close(a(x)[1], b(x[1:])[0], rtol=1e-10, atol=1e-10)
    assert not torch.equal(both.networks[1].weights[0], both.networks[2].weights[0])
    both.prepare(6, torch.arange(10))
    with noise.replica_noise([0, 1], "cpu"):
        both.step(x, y)
    probs = torch.stack([torch.softmax(net(x), -1) for net in both.networks]).mean(0)
    nll = -torch.log(probs.gather(-1, y.unsqueeze(-1))).squeeze(-1).mean(1)
    torch.testing.assert_close(both.extra_metrics(x, 1, y)["bma_nll"], nll)


# --------------------------------------------------------------------------- claims
CONV_CLAIM = {
    "id": "conv", "statement": "a toy convnet claim", "dataset": "mnist", "transform": "unit_interval",
    "labels": True, "model": dict(LENET),
    "methods": {"A": {"method": "sgd"}, "B": {"method": "adam"}},
    "verdict": {"rule": "better", "pairs": [["A", "B"]]},
    "metric": {"name": "error", "higher_is_better": False},
    "profiles": {"quick": {"seeds": [0, 1], "epochs": 1, "batch_size": 50}},
}


def test_convnet_claim_loads(tmp_path):
    assert "conv" in load_toy(tmp_path, CONV_CLAIM)


@pytest.mark.parametrize("method", ["mc_dropout", "bayes_by_backprop", "bernoulli_gsm", "kfac", "sgld"])
def test_mlp_only_method_refused_on_a_convnet(tmp_path, method):
    """Refused when claims load, naming the method's families and the methods that do train convnets."""
    with pytest.raises(ConfigError) as err:
        load_toy(tmp_path, CONV_CLAIM, lambda s: s["methods"].update(A={"method": method}))
    msg = str(err.value)
    assert f"method {method!r} trains 'mlp' models, the claim's model is 'convnet'" in msg
    assert "use a method that trains 'convnet' models (adam, deep_ensemble, entropy_sgd, lamb, lars, sgd)" in msg


def test_input_shape_must_be_the_datasets(tmp_path):
    with pytest.raises(ConfigError, match=r"input_shape = \[3, 28, 28\]: dataset 'mnist' has images of "
                                          r"\[channels, height, width\] = \[1, 28, 28\]: set input_shape: \[1, 28, 28\]"):
        load_toy(tmp_path, CONV_CLAIM, lambda s: s["model"].update(input_shape=[3, 28, 28]))
    with pytest.raises(ConfigError, match=r"model.arch = 'vgg'"):
        load_toy(tmp_path, CONV_CLAIM, lambda s: s["model"].update(arch="vgg"))


# --------------------------------------------------------------------------- CIFAR-10 and SVHN
def _no_data(monkeypatch, tmp_path):
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("CLAIMBENCH_DATA", str(tmp_path / "empty"))
    monkeypatch.setattr(data, "PROJECT_DATA", tmp_path / "cache")


def test_absent_cifar10_is_data_unavailable_with_url_and_checksum(tmp_path, monkeypatch):
    """The loader names the canonical URL and md5 (torchvision's), and a claim on it plans no run:
    its verdict reads 'data unavailable', with the same URL and checksum."""
    _no_data(monkeypatch, tmp_path)
    source = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz (md5 c58f30108f718f92721af3b95e74349a)"
    assert not data.is_available("cifar10")
    with pytest.raises(DatasetNotFound) as err:
        data.load("cifar10", download=False)
    assert source in str(err.value)
    spec = copy.deepcopy(CONV_CLAIM) | {"dataset": "cifar10", "model": dict(RESNET)}
    claims = load_toy(tmp_path / "claims", spec)
    plan = expand(claims["conv"], "quick")
    assert plan.unavailable.startswith("data unavailable: dataset 'cifar10'") and source in plan.unavailable
    assert not plan.runs


def test_svhn_registered_with_urls_and_checksums():
    assert data.sources("svhn") == [
        "http://ufldl.stanford.edu/housenumbers/train_32x32.mat (md5 e26dedcc434d2e4c54c9b2d4a06d8373)",
        "http://ufldl.stanford.edu/housenumbers/test_32x32.mat (md5 eb5a983be6a315427106f1b164d9cef3)"]
    assert data.input_shape("svhn") == data.input_shape("cifar10") == (3, 32, 32)
    assert data.width("cifar10") == 3072 and data.width("cifar10", 2) == 768


def test_cifar10_converter_keeps_channel_major_rows(tmp_path):
    """On a tiny archive of the upstream layout (pickled batches of 3072-value rows, labels), the
    converter concatenates the five training batches in order and keeps the rows as stored."""
    rng = np.random.default_rng(0)
    batches = {name: {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, n))}
               for name, n in [(f"data_batch_{i}", 2) for i in range(1, 6)] + [("test_batch", 3)]}
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, batch in batches.items():
            blob = pickle.dumps(batch)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    out = data._convert_cifar10({"cifar-10-python.tar.gz": archive})
    np.testing.assert_array_equal(out["x_train"], np.concatenate([batches[f"data_batch_{i}"][b"data"] for i in range(1, 6)]))
    np.testing.assert_array_equal(out["y_test"], batches["test_batch"][b"labels"])
    assert out["x_train"].shape == (10, 3072) and out["x_test"].dtype == np.uint8


def test_svhn_converter_layout_and_label_ten_is_zero(tmp_path):
    """X (32, 32, 3, N) becomes rows (N, 3 * 32 * 32) in (C, H, W) order; label 10 is the digit 0."""
    rng = np.random.default_rng(1)
    files = {}
    for split, n in (("train", 4), ("test", 2)):
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = np.array([[10], [3], [1], [10]][:n], dtype=np.uint8)
        files[f"{split}_32x32.mat"] = tmp_path / f"{split}_32x32.mat"
        scipy.io.savemat(files[f"{split}_32x32.mat"], {"X": x, "y": y})
        if split == "train":
            x_train = x
    out = data._convert_svhn(files)
    assert out["x_train"].shape == (4, 3072)
    np.testing.assert_array_equal(out["x_train"][2].reshape(3, 32, 32), x_train[:, :, :, 2].transpose(2, 0, 1))
    np.testing.assert_array_equal(out["y_train"], [0, 3, 1, 0])


def test_pool_averages_each_colour_plane():
    x = np.arange(2 * 3 * 4 * 4, dtype=np.float64).reshape(2, 48)
    pooled = data.pool(x, (4, 4), 2)
    ref = x.reshape(2, 3, 2, 2, 2, 2).mean((3, 5)).reshape(2, 12)
    np.testing.assert_allclose(pooled, ref, rtol=1e-6)


def test_convnet_claims_expand_when_cifar10_is_present(monkeypatch):
    """The CIFAR-10 claims' runs, as they would run once the data is fetched: the quick profile
    builds LeNet-5 on 32x32x3 inputs, the paper profile ResNet-20."""
    from bench.claims.catalog import load_claims

    monkeypatch.setattr(data, "is_available", lambda name: True)
    claims = load_claims()
    quick = expand(claims["lars-closes-large-batch-gap-cifar10"], "quick").runs["LARS LB"]
    paper = expand(claims["entropy-sgd-comparable-to-sgd-cifar10"], "paper").runs["SGD"]
    assert quick.model["arch"] == "lenet5" and paper.model["arch"] == "resnet20"
    assert isinstance(build_model(quick.model, [0]), ConvNet) and quick.model["input_shape"] == [3, 32, 32]


def test_a_run_from_a_spec_refuses_a_method_that_does_not_train_convnets(tmp_path):
    """`python -m bench run --spec` checks what a claim file's schema checks: the method must train
    the model's family; it stops before any data is read or any file written."""
    from bench.core.spec import RunSpec
    from bench.engine import train
    from bench.engine.methods import resolve_hparams

    spec = RunSpec(profile="adhoc", dataset="mnist", transform="unit_interval", labels=True,
                   model={"family": "convnet", "arch": "lenet5", "input_shape": [1, 28, 28], "classes": 10},
                   method="bayes_by_backprop", hparams=resolve_hparams(get_method("bayes_by_backprop"), {}),
                   seeds=(0,), epochs=1, batch_size=10, train_subset=20)
    with pytest.raises(ConfigError, match="the run's model is 'convnet': use a method that trains 'convnet' models"):
        train.run(spec, tmp_path / "run")
    assert not (tmp_path / "run").exists()
