"""Small convolutional classifiers with a replica axis (family ``convnet``): LeNet-5 and ResNet-20.

Images reach the model flattened, x (R, B, D) with D = C * H * W (channel-major, then rows, as the
loader stores them; `input_shape` = [C, H, W] is the dataset's image shape, which the claim schema
checks against the dataset). The R replicas are folded into the channel axis, (B, R * C, H, W), and
every convolution is one grouped convolution with groups = R, so replica r's output channels see
only its own input channels: replicas never mix. Convolution kernels are (R, out, in, k, k),
dense weights (R, out, in) as in bench.models.mlp; `weights` holds both (the layers LARS and LAMB
scale as wholes), `biases` the biases. The output is the categorical logits z (R, B, classes); the
loss, weight cost and objective are bench.models.mlp.Network's. Initialisation: He et al. (2015)
N(0, 2 / fan_in) (fan_in = in * k * k), biases 0, each replica from its own seed.

Architectures (`arch`):

* ``lenet5``: LeNet-5 (LeCun, Bottou, Bengio & Haffner 1998, "Gradient-based learning applied to
  document recognition", Fig. 2): C1 conv 5x5 6 maps, S2 2x2 pooling, C3 conv 5x5 16 maps, S4 2x2
  pooling, C5 120 units, F6 84 units, 10 outputs. The paper's MNIST digits sit in a 32x32 field;
  a 28x28 input is zero-padded by 2 in C1, which is the same network. Modern choices where the
  paper's differ: ReLU for its scaled tanh, max pooling for its subsampling with a trainable
  coefficient and bias per map, C3 connected to all 6 S2 maps (the paper's table connects 10 of
  16 maps to subsets), C5 a dense layer on the 16 x 5 x 5 maps, and softmax cross-entropy for its
  Euclidean RBF output. Parameters for 28x28 grey inputs and 10 classes: 156 + 2,416 + 48,120 +
  10,164 + 850 = 61,706 (the classic count of this fully connected variant; the paper's own, with
  its partial C3 and trainable pooling, is 60,000 by its count).
* ``resnet20``: the CIFAR ResNet of He, Zhang, Ren & Sun (CVPR 2016, "Deep Residual Learning for
  Image Recognition", Sec. 4.2): conv 3x3 16, then 3 stages of 3 basic blocks (two 3x3 convs each)
  with 16, 32, 64 maps, the first block of stages 2 and 3 with stride 2, shortcuts of option A
  (identity; subsampled and zero-padded in channels where the shape changes), global average
  pooling, a dense layer to the classes; convolutions without bias, 19 conv + 1 dense = 20 layers.
  Without batch normalisation (this family keeps no running statistics): the second conv of every
  block starts at zero, so every block starts as its shortcut (Goyal et al. 2017's zero-initialised
  last scale, Zhang et al. 2019's Fixup in its simplest form). Parameters for 32x32x3 inputs and
  10 classes: 268,346 (He et al.'s 0.27M with batch norm's 1,376 scales and shifts).

Raises ValueError for an unknown arch, an input shape that is not [C, H, W], or an image too small
for LeNet-5's two pooled convolutions.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.models import register_family
from bench.models.mlp import Network
from bench.nn import noise

ARCHS = ("lenet5", "resnet20")
RESNET_STAGES = (16, 32, 64)  # He et al. (2016) Sec. 4.2: maps per stage, n = 3 blocks each (6n + 2 = 20 layers)
RESNET_BLOCKS = 3


def _he_normal(shape: tuple[int, ...], generators: list[torch.Generator]) -> Tensor:
    """(R, out, in, *kernel) ~ N(0, 2 / fan_in), fan_in = in * prod(kernel), replica r from generators[r]."""
    fan_in = math.prod(shape[1:])
    return torch.stack([torch.randn(shape, generator=g) for g in generators]) * math.sqrt(2.0 / fan_in)


def grouped_conv(a: Tensor, w: Tensor, b: Tensor | None, stride: int = 1, padding: int = 0) -> Tensor:
    """Every replica's convolution at once: a (B, R * C, H, W), kernels w (R, O, C, k, k), bias
    b (R, O) or None -> (B, R * O, H', W'), replica r's outputs from its own inputs only."""
    r, o = w.shape[:2]
    return F.conv2d(a, w.reshape(r * o, *w.shape[2:]), None if b is None else b.reshape(r * o),
                    stride=stride, padding=padding, groups=r)


def dense(a: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    """a (R, B, in) @ W^T (+ b): weights (R, out, in), bias (R, out) -> (R, B, out)."""
    s = torch.bmm(a, w.transpose(1, 2))
    return s if b is None else s + b.unsqueeze(1)


def _shortcut(a: Tensor, replicas: int, out_channels: int, stride: int) -> Tensor:
    """He et al.'s option A: a (B, R * C, H, W) subsampled by `stride` and zero-padded per replica
    from C to out_channels maps -> (B, R * out_channels, H / stride, W / stride)."""
    a = a[:, :, ::stride, ::stride]
    b, rc, h, w = a.shape
    c = rc // replicas
    if c == out_channels:
        return a
    a = a.reshape(b, replicas, c, h, w)
    return F.pad(a, (0, 0, 0, 0, 0, out_channels - c)).reshape(b, replicas * out_channels, h, w)


@register_family("convnet")
class ConvNet(Network):
    """A convolutional classifier per replica: `arch` (lenet5, resnet20) on images of
    `input_shape` [C, H, W], `classes` outputs, weight cost `l2` (see the module's docstring)."""

    def __init__(self, arch: Literal["lenet5", "resnet20"], input_shape: list[int], seeds: list[int],
                 classes: int = 10, l2: float = 0.0):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"convnet arch {arch!r}; use one of {ARCHS}")
        if len(input_shape) != 3 or min(input_shape) < 1:
            raise ValueError(f"convnet input_shape must be [channels, height, width]; got {input_shape}")
        self.arch, self.input_shape, self.classes = arch, tuple(input_shape), classes
        self.loss, self.l2, self.replicas = "categorical", float(l2), len(seeds)
        gens = noise.replica_generators(seeds)
        shapes, biased = (self._lenet5_shapes() if arch == "lenet5" else self._resnet20_shapes())
        self.weights = nn.ParameterList(nn.Parameter(_he_normal(s, gens)) for s in shapes)
        if arch == "resnet20":
            with torch.no_grad():
                for i in range(2, len(shapes) - 1, 2):  # the second conv of each block
                    self.weights[i].zero_()
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(len(seeds), shapes[i][0])) for i in biased)
        self._biased = biased

    def like(self, seeds: list[int]) -> ConvNet:
        return ConvNet(self.arch, list(self.input_shape), seeds, classes=self.classes, l2=self.l2).to(self.weights[0])

    def _lenet5_shapes(self) -> tuple[list[tuple[int, ...]], list[int]]:
        c, h, w = self.input_shape
        side = [(s // 2 - 4) // 2 for s in (h, w)]  # C1 'same' (padding 2), S2, C3 'valid', S4
        if min(side) < 1:
            raise ValueError(f"lenet5 needs images of at least 12x12 pixels; got {h}x{w}")
        flat = 16 * side[0] * side[1]
        shapes = [(6, c, 5, 5), (16, 6, 5, 5), (120, flat), (84, 120), (self.classes, 84)]
        return shapes, list(range(len(shapes)))

    def _resnet20_shapes(self) -> tuple[list[tuple[int, ...]], list[int]]:
        shapes: list[tuple[int, ...]] = [(RESNET_STAGES[0], self.input_shape[0], 3, 3)]
        c = RESNET_STAGES[0]
        for maps in RESNET_STAGES:
            for _ in range(RESNET_BLOCKS):
                shapes += [(maps, c, 3, 3), (maps, maps, 3, 3)]
                c = maps
        shapes.append((self.classes, c))
        return shapes, [len(shapes) - 1]  # convs without bias (He et al.), the dense layer with one

    def _bias(self, i: int) -> Tensor | None:
        return self.biases[self._biased.index(i)] if i in self._biased else None

    def forward(self, x: Tensor) -> Tensor:
        """Logits z (R, B, classes) of x (R, B, C * H * W)."""
        r, b = self.weights[0].shape[0], x.shape[1]  # from the parameters: a functional call may pass one replica
        a = x.reshape(r, b, *self.input_shape).transpose(0, 1).reshape(b, r * self.input_shape[0], *self.input_shape[1:])
        a = self._lenet5(a, r) if self.arch == "lenet5" else self._resnet20(a, r)
        return dense(a, self.weights[-1], self._bias(len(self.weights) - 1))

    def _lenet5(self, a: Tensor, r: int) -> Tensor:
        """a (B, R * C, H, W) -> F6's activations (R, B, 84)."""
        w = self.weights
        a = F.max_pool2d(torch.relu(grouped_conv(a, w[0], self._bias(0), padding=2)), 2)
        a = F.max_pool2d(torch.relu(grouped_conv(a, w[1], self._bias(1))), 2)
        a = a.reshape(a.shape[0], r, -1).transpose(0, 1)
        a = torch.relu(dense(a, w[2], self._bias(2)))
        return torch.relu(dense(a, w[3], self._bias(3)))

    def _resnet20(self, a: Tensor, r: int) -> Tensor:
        """a (B, R * C, H, W) -> the globally pooled last stage (R, B, 64)."""
        w = self.weights
        a = torch.relu(grouped_conv(a, w[0], None, padding=1))
        i = 1
        for stage, maps in enumerate(RESNET_STAGES):
            for block in range(RESNET_BLOCKS):
                stride = 2 if stage > 0 and block == 0 else 1
                s = torch.relu(grouped_conv(a, w[i], None, stride=stride, padding=1))
                s = grouped_conv(s, w[i + 1], None, padding=1)
                a = torch.relu(s + _shortcut(a, r, maps, stride))
                i += 2
        return a.mean((2, 3)).reshape(a.shape[0], r, -1).transpose(0, 1)
