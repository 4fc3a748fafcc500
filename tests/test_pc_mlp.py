"""Predictive coding with value nodes on hidden layers of chosen distributions (methods/pc_mlp.py;
Pinchetti et al. 2022) and its character corpus (bench/engine/corpus.py).

References: autograd of backprop's output loss at the feed-forward pass, in float64, for PC's weight
gradient in the small-error limit (Gaussian and logistic hidden nodes, categorical and Gaussian
outputs, two hidden layers); torch.distributions' log-densities for the hidden energies; the text
itself for the corpus's windows."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Normal, TransformedDistribution, Uniform
from torch.distributions.transforms import AffineTransform, SigmoidTransform

from bench.core.errors import ConfigError
from bench.engine import corpus, data
from bench.models.mlp import MLP
from methods.pc_mlp import PCMLP, hidden_energy, output_energy


def _mlp(layers=(5, 4, 3, 4)) -> MLP:
    return MLP(list(layers), [0], activations="tanh", loss="categorical", init="kaiming").double()


def _batch(n: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    return torch.randn(1, n, 5, generator=g, dtype=torch.float64), torch.randint(0, 4, (1, n), generator=g)


def _gradients(hidden: str, output: str, scale: float, iterations: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """(PC's weight gradient of the mean F at the inferred nodes, backprop's gradient of the mean
    output energy at the feed-forward pass), flat, one replica in float64."""
    model = _mlp()
    x, y = _batch()
    method = PCMLP(model, hidden=hidden, output=output, scale=scale, iterations=iterations, lr_x=0.5)
    nodes, _ = method.infer(x, y)
    pc = torch.autograd.grad(method.free_energy(x, nodes, y).mean(), list(model.parameters()))
    bp = torch.autograd.grad(output_energy(model(x), y, output).mean(), list(model.parameters()))
    return torch.cat([g.flatten() for g in pc]), torch.cat([g.flatten() for g in bp])


@pytest.mark.parametrize("hidden", ["gaussian", "logistic"])
@pytest.mark.parametrize("output", ["categorical", "gaussian"])
def test_small_scale_limit_is_backprop(hidden, output):
    """At the inference fixed point, as the hidden nodes' scale s -> 0, PC's weight gradient tends to
    backprop's (module docstring): relative error O(s^2), and not small at s = 1."""
    error = {}
    for scale in (1.0, 1e-2, 1e-3):
        pc, bp = _gradients(hidden, output, scale)
        error[scale] = ((pc - bp).norm() / bp.norm()).item()
    assert error[1e-3] < 1e-5
    assert 30 < error[1e-2] / error[1e-3] < 300  # the s^2 rate: 100
    assert error[1.0] > 1e-2


def test_no_inference_leaves_hidden_weights_untouched():
    """At T = 0 the nodes sit at their predictions, every hidden energy at its minimum: only the
    output layer gets a gradient, backprop's for that layer."""
    model = _mlp()
    x, y = _batch()
    method = PCMLP(model, iterations=0)
    nodes, _ = method.infer(x, y)
    pc = torch.autograd.grad(method.free_energy(x, nodes, y).mean(), list(model.parameters()))
    bp = torch.autograd.grad(output_energy(model(x), y, "categorical").mean(), list(model.parameters()))
    for p, g_pc, g_bp in zip(model.parameters(), pc, bp):
        if p is model.weights[-1] or p is model.biases[-1]:
            torch.testing.assert_close(g_pc, g_bp)
        else:
            assert g_pc.abs().max() < 1e-12


def test_hidden_energies_are_negative_log_densities():
    g = torch.Generator().manual_seed(5)
    x, mu = torch.randn(2, 3, 6, generator=g, dtype=torch.float64), torch.randn(2, 3, 6, generator=g, dtype=torch.float64)
    scale = 0.7
    gauss = -Normal(mu, scale).log_prob(x).sum(-1)
    logistic = TransformedDistribution(Uniform(torch.zeros_like(mu), torch.ones_like(mu)),
                                       [SigmoidTransform().inv, AffineTransform(mu, scale)])
    torch.testing.assert_close(hidden_energy(x, mu, scale, "gaussian"), gauss)
    torch.testing.assert_close(hidden_energy(x, mu, scale, "logistic"), -logistic.log_prob(x).sum(-1))


def test_step_lowers_the_energy_and_rejects_bad_settings():
    model = _mlp()
    x, y = _batch(32)
    method = PCMLP(model, lr=1e-2)
    first = method.step(x, y)["energy"]
    for _ in range(30):
        last = method.step(x, y)["energy"]
    assert last.item() < first.item()
    with pytest.raises(ConfigError, match="lr_x"):
        PCMLP(_mlp(), lr_x=2.0)
    with pytest.raises(ConfigError, match="loss categorical"):
        PCMLP(MLP([5, 4, 4], [0], loss="gaussian"))


def test_corpus_windows_follow_the_text():
    text = corpus.normalise("Ab, c.\n\tDe  f!")
    assert text == "ab c. de f "
    x, y = corpus.windows(text, 3)
    v = len(corpus.ALPHABET)
    decoded = ["".join(corpus.ALPHABET[i] for i in row.reshape(3, v).argmax(1)) for row in x]
    assert decoded == [text[i:i + 3] for i in range(len(text) - 3)]
    assert "".join(corpus.ALPHABET[i] for i in y) == text[3:]
    assert (x.reshape(len(x), 3, v).sum(2) == 1).all()
    with pytest.raises(ValueError, match="not in the alphabet"):
        corpus.windows("a!", 1)


def test_python_docs_chars_is_the_registered_text():
    ds = data.load("python_docs_chars")
    v = len(corpus.ALPHABET)
    head = "".join(corpus.ALPHABET[i] for i in ds.x["train"][0].reshape(3, v).argmax(1))
    assert head + "".join(corpus.ALPHABET[i] for i in ds.y["train"][:20]) == corpus.pydoc_topics_text()[:23]
    assert corpus.sha256_text(corpus.pydoc_topics_text()) == data.PYDOC_CHARS_SHA256
