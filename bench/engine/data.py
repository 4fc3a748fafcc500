"""Dataset registry: canonical URLs and checksums, a search path, an npz cache, and loaders.

The papers' small synthetic toys (3x3 lines, 4x4 bars, the QBVI paper's GLMs) are generated in memory by the process
their code defines, with fixed seeds; the MNIST 8-puzzle is rendered in memory from the verified
`mnist` (Latplan's construction). Every real dataset is stored as one compressed npz (`<name>.npz`, arrays `x_train`, `x_valid`,
`x_test`, `y_*` where labels exist). The loader looks for it on the search path:

1. every directory in `$CLAIMBENCH_DATA` (``os.pathsep``-separated), then
2. `data/` in the project root (git-ignored; downloads and conversions land here).

An npz is accepted only when its sha256 is the registered one (the hash of the file that the
project distributes, see ``npz_sha256``) or, for an npz this module converted itself, the hash
recorded beside it at conversion time (``<name>.npz.sha256``) after the upstream originals were
verified. When no npz is found, the upstream originals are looked for on the search path (also in
an ``orig/`` subdirectory) and checked against the upstream checksums; missing ones are downloaded
from their canonical URLs into ``data/orig/`` with pooch (``pooch.retrieve`` with the registered
``known_hash``, which refuses and deletes a download that does not match) when the network allows.
The verified originals are then converted. Nothing is ever loaded unverified.
"""

from __future__ import annotations

import gzip
import itertools
import os
import pickle
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pooch
import scipy.io

from bench.core.errors import ChecksumMismatch, ConfigError, DatasetNotFound, unknown
from bench.core.layout import PROJECT_ROOT, atomic_write
from bench.domains import puzzle8
from bench.engine import corpus

PROJECT_DATA = PROJECT_ROOT / "data"
ENV_VAR = "CLAIMBENCH_DATA"


@dataclass(frozen=True)
class Original:
    """One upstream file: where it lives and how to recognise it."""

    filename: str
    url: str
    sha256: str | None = None
    md5: str | None = None  # only where no sha256 is published (Omniglot)


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: its originals, conversion and the shapes its splits must have."""

    name: str
    description: str
    shapes: dict[str, tuple[int, ...]]  # split -> expected x shape (asserted on load)
    binary: bool
    originals: tuple[Original, ...]
    convert: Callable[[dict[str, Path]], dict[str, np.ndarray]] | None
    npz_sha256: str | None = None  # the distributed npz (see MANIFEST of the data folder)
    generate: Callable[[], dict[str, np.ndarray]] | None = None  # a paper's synthetic toy, built in memory
    requires: tuple[str, ...] = ()  # the datasets a generated one is rendered from (the MNIST 8-puzzle: mnist)
    image_shape: tuple[int, int] | None = (28, 28)
    notes: str = ""
    channels: int = 1  # colour planes per image, stored one after another (C, H, W), row-major


@dataclass
class Dataset:
    """Loaded arrays. `x[split]` is uint8 (or float32 in [0, 1] for Omniglot), shape (N, D)."""

    name: str
    x: dict[str, np.ndarray]
    y: dict[str, np.ndarray] = field(default_factory=dict)
    binary: bool = True
    image_shape: tuple[int, int] | None = None
    path: Path | None = None


# --------------------------------------------------------------------------- converters
def _idx(path: Path, offset: int) -> np.ndarray:
    return np.frombuffer(gzip.open(path).read(), np.uint8, offset=offset)


def _convert_idx(files: dict[str, Path]) -> dict[str, np.ndarray]:
    """MNIST-style idx.gz files (images offset 16, labels offset 8)."""
    return {
        "x_train": _idx(files["train-images-idx3-ubyte.gz"], 16).reshape(-1, 784),
        "y_train": _idx(files["train-labels-idx1-ubyte.gz"], 8),
        "x_test": _idx(files["t10k-images-idx3-ubyte.gz"], 16).reshape(-1, 784),
        "y_test": _idx(files["t10k-labels-idx1-ubyte.gz"], 8),
    }


def _convert_amat(files: dict[str, Path]) -> dict[str, np.ndarray]:
    """Larochelle's binarized MNIST: whitespace-separated 0/1 text, one image per line."""
    return {
        f"x_{split}": np.loadtxt(files[f"binarized_mnist_{split}.amat"], dtype=np.uint8)
        for split in ("train", "valid", "test")
    }


def _matlab_columns(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """MATLAB stores each image column-major; return row-major flattened uint8 images."""
    h, w = shape
    return np.ascontiguousarray(a.reshape(-1, w, h).transpose(0, 2, 1).reshape(-1, h * w))


def _convert_caltech(files: dict[str, Path]) -> dict[str, np.ndarray]:
    m = scipy.io.loadmat(files["caltech101_silhouettes_28_split1.mat"])
    out = {}
    for ours, theirs in (("train", "train"), ("valid", "val"), ("test", "test")):
        out[f"x_{ours}"] = _matlab_columns(m[f"{theirs}_data"], (28, 28)).astype(np.uint8)
        out[f"y_{ours}"] = m[f"{theirs}_labels"].ravel().astype(np.uint8)
    return out


def _convert_frey(files: dict[str, Path]) -> dict[str, np.ndarray]:
    ff = scipy.io.loadmat(files["frey_rawface.mat"])["ff"]  # (560, 1965)
    return {"x": np.ascontiguousarray(ff.T).astype(np.uint8)}


def _convert_omniglot(files: dict[str, Path]) -> dict[str, np.ndarray]:
    """IWAE's chardata.mat: (784, N) float images in [0, 1], stored column-major per image."""
    m = scipy.io.loadmat(files["chardata.mat"])
    to_rows = lambda a: _matlab_columns(a.T.astype(np.float32), (28, 28))  # noqa: E731
    return {"x_train": to_rows(m["data"]), "x_test": to_rows(m["testdata"])}


CIFAR10_BATCHES = "cifar-10-batches-py"


def _convert_cifar10(files: dict[str, Path]) -> dict[str, np.ndarray]:
    """CIFAR-10's python archive: pickled batches whose b'data' rows are 3072 uint8 values, the
    1024 red, then green, then blue pixels of a 32x32 image, row-major (the layout kept here);
    b'labels' 0..9. Train = data_batch_1..5 (50,000), test = test_batch (10,000)."""
    with tarfile.open(files["cifar-10-python.tar.gz"], "r:gz") as tar:
        def batch(name: str) -> tuple[np.ndarray, np.ndarray]:
            d = pickle.load(tar.extractfile(f"{CIFAR10_BATCHES}/{name}"), encoding="bytes")  # noqa: S301 (verified md5)
            return np.asarray(d[b"data"], np.uint8), np.asarray(d[b"labels"], np.uint8)

        train = [batch(f"data_batch_{i}") for i in range(1, 6)]
        x_test, y_test = batch("test_batch")
    return {"x_train": np.concatenate([x for x, _ in train]), "y_train": np.concatenate([y for _, y in train]),
            "x_test": x_test, "y_test": y_test}


def _convert_svhn(files: dict[str, Path]) -> dict[str, np.ndarray]:
    """SVHN's cropped digits (format 2): X (32, 32, 3, N) uint8 and y (N, 1) in 1..10, where 10
    is the digit 0 (relabelled 0, as torchvision does). Rows are (C, H, W) flattened, as CIFAR-10."""
    out = {}
    for split in ("train", "test"):
        m = scipy.io.loadmat(files[f"{split}_32x32.mat"])
        out[f"x_{split}"] = np.ascontiguousarray(m["X"].transpose(3, 2, 0, 1)).reshape(m["X"].shape[3], -1)
        out[f"y_{split}"] = (m["y"].ravel() % 10).astype(np.uint8)
    return out


def _convert_debd(name: str) -> Callable[[dict[str, Path]], dict[str, np.ndarray]]:
    def convert(files: dict[str, Path]) -> dict[str, np.ndarray]:
        return {
            f"x_{split}": np.loadtxt(files[f"{name}.{split}.data"], delimiter=",", dtype=np.uint8)
            for split in ("train", "valid", "test")
        }

    return convert


# --------------------------------------------------------------------------- the papers' synthetic toys
def _generate_lines_3x3() -> dict[str, np.ndarray]:
    """Kirby's 3x3 lines as in the NRWS authors' code (rist-ro/argo datasets/ThreeByThreeLines.py):
    12 patterns, the 6 vertical ones (1 or 2 of the 3 columns on) with probability 2/18 each and the
    6 horizontal ones with 1/18 each, as 2000 / 1000 copies per pattern (18,000 images) in a random
    order; train = the first 15,000, validation = test = the last 3,000 (as in the code).
    Entropy of the data distribution: 2.4283 nats, the best achievable test NLL."""
    patterns, copies = [], []
    for axis, n_copies in ((1, 2000), (0, 1000)):  # vertical lines = columns on, then horizontal
        for on in [c for r in (1, 2) for c in itertools.combinations(range(3), r)]:
            img = np.zeros((3, 3), np.uint8)
            if axis == 1:
                img[:, list(on)] = 1
            else:
                img[list(on), :] = 1
            patterns.append(img.ravel())
            copies.append(n_copies)
    x = np.repeat(np.stack(patterns), copies, axis=0)
    x = x[np.random.default_rng(2733).permutation(len(x))]
    return {"x_train": x[:15000], "x_valid": x[15000:], "x_test": x[15000:]}


def _generate_bars_4x4() -> dict[str, np.ndarray]:
    """4x4 bars as in RWS's code (jbornschein/reweighted-ws learning/datasets BarsData, D=4):
    each of the 2D = 8 bars (4 rows, 4 columns) is on independently with probability 1/(2D);
    a pixel is on when its row or its column bar is. Train 10,000 / valid 1,000 / test 10,000."""
    rng = np.random.default_rng(23)
    out = {}
    for split, n in (("train", 10000), ("valid", 1000), ("test", 10000)):
        bars = rng.random((n, 8)) < 1 / 8
        img = bars[:, :4, None] | bars[:, None, 4:]
        out[f"x_{split}"] = img.reshape(n, 16).astype(np.uint8)
    return out


def _generate_dataset_free() -> dict[str, np.ndarray]:
    """No data: the placeholder of a problem stated in the claim's model config (a Gibbs state to
    prepare, bench/workloads/qhbm.py), whose methods ignore their batch. Five zero rows to train on
    (one full-batch step per epoch, also after a tuning run carves one off as 'valid') and one to
    evaluate on."""
    return {"x_train": np.zeros((5, 1), np.uint8), "x_test": np.zeros((1, 1), np.uint8)}


def _generate_glm(likelihood: str) -> dict[str, np.ndarray]:
    """The synthetic GLMs of the QBVI authors' reference scripts (Magris, Shabani & Iosifidis 2022,
    arXiv 2205.11568; mmagris/QBVI Run_QBVI_logistic.m / Run_QBVI_linear.m): n = 1000 training and
    1000 test examples, each a row (x_1, x_2, x_3, y), float32, response last.

    * 'logistic': x ~ U(0, 1)^3, y ~ Bernoulli(sigmoid(0.1 + 0.3 x_1 - x_2 + 2 x_3)) (intercept 0.1,
      beta = (0.3, -1, 2));
    * 'linear': y = 0.3 x_1 - x_2 + 2 x_3 + 0.5 eps, eps ~ N(0, 1), no intercept, x ~ N(0, 1)^3
      (the scripts' covariate law is not in the notes: standard normal is our choice).

    numpy's generator with fixed seeds (the MATLAB scripts' rng(1) stream cannot be reproduced)."""
    rng = np.random.default_rng(1 if likelihood == "logistic" else 2)
    out = {}
    for split in ("train", "test"):
        if likelihood == "logistic":
            x = rng.random((1000, 3))
            y = (rng.random(1000) < 1 / (1 + np.exp(-(0.1 + x @ np.array([0.3, -1.0, 2.0]))))).astype(float)
        else:
            x = rng.standard_normal((1000, 3))
            y = x @ np.array([0.3, -1.0, 2.0]) + 0.5 * rng.standard_normal(1000)
        out[f"x_{split}"] = np.column_stack([x, y]).astype(np.float32)
    return out


MNIST_8PUZZLE_SIZES = {"train": 5000, "test": 1000}


def _generate_mnist_8puzzle() -> dict[str, np.ndarray]:
    """The MNIST 8-puzzle of Latplan (Asai & Fukunaga 2018), rendered from the verified `mnist`:
    tile t is the first MNIST training image of digit t (training indices 1, 3, 5, 7, 2, 0, 13,
    15, 17 for digits 0..8), 2x2-mean pooled to 14x14 (bench.domains.puzzle8). 6000 distinct
    states drawn uniformly from the 181,440 reachable ones (seed 8): the first 5000 train, the
    last 1000 test (held-out states). x: (N, 1764) uint8 grey 42x42 images; y: each state's
    Lehmer-code rank (puzzle8.unrank gives the permutation)."""
    mnist = load("mnist")
    tiles, _ = puzzle8.mnist_tiles(mnist.x["train"], mnist.y["train"])
    states = puzzle8.random_states(sum(MNIST_8PUZZLE_SIZES.values()), np.random.default_rng(8))
    n = MNIST_8PUZZLE_SIZES["train"]
    out = {}
    for split, part in (("train", states[:n]), ("test", states[n:])):
        out[f"x_{split}"], out[f"y_{split}"] = puzzle8.render(part, tiles), puzzle8.rank(part)
    return out


PYDOC_CHARS_SHA256 = "c686ccb2588ab95eaae4d141f1bc40831a40c6a1226dc17dde448e2154375a48"  # CPython 3.11.7's text
PYDOC_CHARS_LENGTH = 381440  # characters of the normalised text
PYDOC_CHARS_CONTEXT = 3  # characters of context per example
PYDOC_CHARS_TRAIN = 343296  # the first 90% of the characters train, the last 10% test


def _generate_python_docs_chars() -> dict[str, np.ndarray]:
    """Next-character prediction on the Python reference manual's topics that CPython ships
    (bench.engine.corpus: pydoc_data/topics.py, PSF License Version 2), normalised to 28 symbols
    (space, a-z, '.'): x the one-hot codes of 3 context characters (N, 84) uint8, y the next
    character's index (N,). The first 343,296 characters give the training examples, the last
    38,144 the test examples (contiguous; no window crosses the cut). A ChecksumMismatch when the
    interpreter's text is not the registered one (another CPython release ships other docs)."""
    text = corpus.pydoc_topics_text()
    digest = corpus.sha256_text(text)
    if digest != PYDOC_CHARS_SHA256:
        raise ChecksumMismatch(
            f"python_docs_chars: the normalised text of this interpreter's pydoc_data.topics has sha256 {digest} "
            f"({len(text)} characters), not the registered {PYDOC_CHARS_SHA256} ({PYDOC_CHARS_LENGTH}, CPython "
            f"3.11.7): run with the project's CPython 3.11.7, or register this release's text as another dataset")
    out = {}
    for split, part in (("train", text[:PYDOC_CHARS_TRAIN]), ("test", text[PYDOC_CHARS_TRAIN:])):
        out[f"x_{split}"], out[f"y_{split}"] = corpus.windows(part, PYDOC_CHARS_CONTEXT)
    return out


# --------------------------------------------------------------------------- registry
_LAROCHELLE = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
_LECUN = "http://yann.lecun.com/exdb/mnist/"
_ZALANDO = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_DEBD = "https://raw.githubusercontent.com/arranger1044/DEBD/master/datasets/"
_SVHN = "http://ufldl.stanford.edu/housenumbers/"


def _debd_spec(name: str, dim: int, sizes: tuple[int, int, int], npz_sha256: str, notes: str = "") -> DatasetSpec:
    return DatasetSpec(
        name=f"uci_{name}",
        description=f"UCI '{name}' binary density-estimation set (NADE benchmark, DEBD copy)",
        shapes={s: (n, dim) for s, n in zip(("train", "valid", "test"), sizes)},
        binary=True,
        originals=tuple(
            Original(f"{name}.{s}.data", f"{_DEBD}{name}/{name}.{s}.data") for s in ("train", "valid", "test")
        ),
        convert=_convert_debd(name),
        npz_sha256=npz_sha256,
        image_shape=None,
        notes=notes or "No upstream byte checksums are published; the distributed npz hash is checked.",
    )


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in [
        DatasetSpec(
            name="lines_3x3",
            description="3x3 lines (Kirby's Helmholtz-machine toy; NRWS authors' code), generated",
            shapes={"train": (15000, 9), "valid": (3000, 9), "test": (3000, 9)},
            binary=True, originals=(), convert=None, generate=_generate_lines_3x3, image_shape=(3, 3),
        ),
        DatasetSpec(
            name="bars_4x4",
            description="4x4 bars (RWS paper's toy), generated",
            shapes={"train": (10000, 16), "valid": (1000, 16), "test": (10000, 16)},
            binary=True, originals=(), convert=None, generate=_generate_bars_4x4, image_shape=(4, 4),
        ),
        DatasetSpec(
            name="dataset_free",
            description="no data: the problem is stated in the model config (a Gibbs state to prepare); a placeholder batch",
            shapes={"train": (5, 1), "test": (1, 1)},
            binary=True, originals=(), convert=None, generate=_generate_dataset_free, image_shape=None,
        ),
        DatasetSpec(
            name="glm_logistic",
            description="Bayesian logistic regression data, the QBVI paper's own recipe (Run_QBVI_logistic.m): "
                        "x ~ U(0,1)^3, intercept 0.1, beta (0.3, -1, 2); rows (x, y); generated",
            shapes={"train": (1000, 4), "test": (1000, 4)},
            binary=False, originals=(), convert=None, generate=lambda: _generate_glm("logistic"), image_shape=None,
        ),
        DatasetSpec(
            name="glm_linear",
            description="Bayesian linear regression data, the QBVI paper's own recipe (Run_QBVI_linear.m): "
                        "beta (0.3, -1, 2), noise sd 0.5, no intercept, x ~ N(0,1)^3 (our choice); rows (x, y); generated",
            shapes={"train": (1000, 4), "test": (1000, 4)},
            binary=False, originals=(), convert=None, generate=lambda: _generate_glm("linear"), image_shape=None,
        ),
        DatasetSpec(
            name="python_docs_chars",
            description="next character of the Python reference manual's topics shipped with CPython 3.11.7 "
                        "(pydoc_data/topics.py, PSF License v2), 28 symbols, 3 characters of context one-hot; generated",
            shapes={"train": (PYDOC_CHARS_TRAIN - PYDOC_CHARS_CONTEXT, PYDOC_CHARS_CONTEXT * len(corpus.ALPHABET)),
                    "test": (PYDOC_CHARS_LENGTH - PYDOC_CHARS_TRAIN - PYDOC_CHARS_CONTEXT,
                             PYDOC_CHARS_CONTEXT * len(corpus.ALPHABET))},
            binary=True, originals=(), convert=None, generate=_generate_python_docs_chars, image_shape=None,
            notes="Built from the interpreter's standard library and checked against the normalised text's sha256; "
                  "labels are the next character's index in ' abcdefghijklmnopqrstuvwxyz.'.",
        ),
        DatasetSpec(
            name="mnist_8puzzle",
            description="MNIST 8-puzzle (Latplan): 42x42 grey images of random states, rendered from mnist",
            shapes={s: (n, puzzle8.PIXELS) for s, n in MNIST_8PUZZLE_SIZES.items()},
            binary=False, originals=(), convert=None, generate=_generate_mnist_8puzzle, requires=("mnist",),
            image_shape=(puzzle8.IMAGE_PX, puzzle8.IMAGE_PX),
            notes="Generated from the verified mnist dataset (its search path and checksum); labels are state ranks.",
        ),
        DatasetSpec(
            name="binarized_mnist",
            description="MNIST, static binarization of Larochelle & Murray (2011), 50k/10k/10k",
            shapes={"train": (50000, 784), "valid": (10000, 784), "test": (10000, 784)},
            binary=True,
            originals=(
                Original("binarized_mnist_train.amat", _LAROCHELLE + "binarized_mnist_train.amat",
                         "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d"),
                Original("binarized_mnist_valid.amat", _LAROCHELLE + "binarized_mnist_valid.amat",
                         "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2"),
                Original("binarized_mnist_test.amat", _LAROCHELLE + "binarized_mnist_test.amat",
                         "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c"),
            ),
            convert=_convert_amat,
            npz_sha256="acff5906b9a6b05b0e6963476d98d305816c841f7c13ec87788d0104ce642d37",
        ),
        DatasetSpec(
            name="mnist",
            description="MNIST grey-scale 0..255, 60k train / 10k test (LeCun et al. 1998)",
            shapes={"train": (60000, 784), "test": (10000, 784)},
            binary=False,
            originals=(
                Original("train-images-idx3-ubyte.gz", _LECUN + "train-images-idx3-ubyte.gz",
                         "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
                Original("train-labels-idx1-ubyte.gz", _LECUN + "train-labels-idx1-ubyte.gz",
                         "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
                Original("t10k-images-idx3-ubyte.gz", _LECUN + "t10k-images-idx3-ubyte.gz",
                         "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
                Original("t10k-labels-idx1-ubyte.gz", _LECUN + "t10k-labels-idx1-ubyte.gz",
                         "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
            ),
            convert=_convert_idx,
            npz_sha256="1d91b7ac1c35e4233859e051f1e9a2ee63b45779b78d78027ef000b6ddb2c4a3",
            notes="No validation split is stored; claims that need one hold out the last 10k of train.",
        ),
        DatasetSpec(
            name="fashion_mnist",
            description="Fashion-MNIST grey-scale 0..255, 60k train / 10k test (Xiao et al. 2017)",
            shapes={"train": (60000, 784), "test": (10000, 784)},
            binary=False,
            originals=(
                Original("fashion-train-images-idx3-ubyte.gz", _ZALANDO + "train-images-idx3-ubyte.gz",
                         "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
                Original("fashion-train-labels-idx1-ubyte.gz", _ZALANDO + "train-labels-idx1-ubyte.gz",
                         "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
                Original("fashion-t10k-images-idx3-ubyte.gz", _ZALANDO + "t10k-images-idx3-ubyte.gz",
                         "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
                Original("fashion-t10k-labels-idx1-ubyte.gz", _ZALANDO + "t10k-labels-idx1-ubyte.gz",
                         "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
            ),
            convert=lambda files: _convert_idx({k.removeprefix("fashion-"): v for k, v in files.items()}),
            npz_sha256="f474d09ddedf27cd828a4d07489818755712eb744c366290ad20bb1ee6e9578b",
        ),
        DatasetSpec(
            name="caltech101_silhouettes_28",
            description="Caltech-101 Silhouettes 28x28, split 1 (Marlin et al. 2010); 1 = background",
            shapes={"train": (4100, 784), "valid": (2264, 784), "test": (2307, 784)},
            binary=True,
            originals=(
                Original("caltech101_silhouettes_28_split1.mat",
                         "https://people.cs.umass.edu/~marlin/data/caltech101_silhouettes_28_split1.mat",
                         "eb6735e8d84b1850fabc5590124aab1755e90c9fd28123585324398405e1e42a"),
            ),
            convert=_convert_caltech,
            npz_sha256="3beba8d006b8edee7f3b67ea5261da555e955015621f10884f3545854ea53103",
        ),
        DatasetSpec(
            name="frey_faces",
            description="Frey faces, 1965 grey-scale 28x20 frames (Roweis); no canonical split",
            shapes={"all": (1965, 560)},
            binary=False,
            originals=(
                Original("frey_rawface.mat", "https://cs.nyu.edu/~roweis/data/frey_rawface.mat",
                         "265a83a23adb081755cd3de375509828e690324d1d60f076b8ecebc840d59c64"),
            ),
            convert=_convert_frey,
            npz_sha256="f77467ecfe9f1cb16110170ded97a59f6cf12ebf7dae23c78542285cba5b87aa",
            image_shape=(28, 20),
        ),
        DatasetSpec(
            name="omniglot",
            description="Omniglot 28x28 as used by IWAE (chardata.mat), 24345 train / 8070 test",
            shapes={"train": (24345, 784), "test": (8070, 784)},
            binary=False,
            originals=(
                Original("chardata.mat", "https://github.com/yburda/iwae/raw/master/datasets/OMNIGLOT/chardata.mat",
                         md5="21ecaf34373511aa7691cf2e0802aa3d"),
            ),
            convert=_convert_omniglot,
            notes="Not in the shared data folder here; only the upstream md5 is published.",
        ),
        DatasetSpec(
            name="cifar10",
            description="CIFAR-10, 32x32 colour images 0..255 in 10 classes, 50k train / 10k test (Krizhevsky 2009)",
            shapes={"train": (50000, 3072), "test": (10000, 3072)},
            binary=False,
            originals=(
                Original("cifar-10-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                         md5="c58f30108f718f92721af3b95e74349a"),
            ),
            convert=_convert_cifar10,
            image_shape=(32, 32),
            channels=3,
            notes="Not in the shared data folder here; only the upstream md5 is published (torchvision's). "
                  "No validation split; claims hold out the end of train.",
        ),
        DatasetSpec(
            name="svhn",
            description="SVHN cropped digits 32x32 colour 0..255, 73,257 train / 26,032 test, 'extra' left out "
                        "(Netzer et al. 2011)",
            shapes={"train": (73257, 3072), "test": (26032, 3072)},
            binary=False,
            originals=(
                Original("train_32x32.mat", _SVHN + "train_32x32.mat", md5="e26dedcc434d2e4c54c9b2d4a06d8373"),
                Original("test_32x32.mat", _SVHN + "test_32x32.mat", md5="eb5a983be6a315427106f1b164d9cef3"),
            ),
            convert=_convert_svhn,
            image_shape=(32, 32),
            channels=3,
            notes="Not in the shared data folder here; only the upstream md5s are published (torchvision's). "
                  "Label 10 (the digit 0) is stored as 0.",
        ),
        _debd_spec("mushrooms", 112, (2000, 500, 5624),
                   "c62c40bce17834c11aa1d3111b2c339ad985c4a13c525f08b853d50bde35053a"),
        _debd_spec("nips", 500, (400, 100, 1240),
                   "9d301b085a2b9caadb00327020d011214cd50228eb980b46e9422f6c63bb7c1e"),
        _debd_spec("dna", 180, (1600, 400, 1186),
                   "cd9dd13615d5a38387d18ff544570ed3bf3ae39402b714d0632e0f44ae86e637",
                   notes="DEBD's split (1600/400/1186), not NADE's (1400/600/1186)."),
    ]
}


# --------------------------------------------------------------------------- search and verification
def search_path() -> list[Path]:
    """Directories searched for datasets, in order: $CLAIMBENCH_DATA entries, then data/."""
    env = os.environ.get(ENV_VAR, "")
    dirs = [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    return dirs + [PROJECT_DATA]


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    return pooch.file_hash(str(path), alg=algorithm)


def _verify_original(path: Path, orig: Original) -> None:
    algorithm, expected = ("sha256", orig.sha256) if orig.sha256 else ("md5", orig.md5)
    if expected is None:
        return  # no published checksum exists (DEBD text files); the converted npz is then hashed
    actual = file_digest(path, algorithm)
    if actual != expected:
        raise ChecksumMismatch(
            f"{path}: {algorithm} {actual} does not match the registered {expected} for {orig.filename} "
            f"(from {orig.url}). The file is corrupt or a different version: delete it and fetch it again."
        )


def _verify_npz(path: Path, spec: DatasetSpec) -> None:
    actual = file_digest(path)
    accepted = {spec.npz_sha256} - {None}
    sidecar = path.with_name(path.name + ".sha256")
    if sidecar.exists():
        accepted.add(sidecar.read_text().split()[0])
    if actual not in accepted:
        raise ChecksumMismatch(
            f"{path}: sha256 {actual} matches none of the registered hashes for dataset {spec.name!r} "
            f"({', '.join(sorted(accepted)) or 'none'}). The file is corrupt or not the expected data: "
            f"replace it with a verified copy, or delete it so that it is rebuilt from the originals."
        )


def _find_original(orig: Original) -> Path | None:
    for d in search_path():
        for candidate in (d / orig.filename, d / "orig" / orig.filename):
            if candidate.is_file():
                return candidate
    return None


def _known_hash(orig: Original) -> str | None:
    """The registered checksum in pooch's ``alg:hex`` form (None: nothing published, see the npz hash)."""
    return f"sha256:{orig.sha256}" if orig.sha256 else f"md5:{orig.md5}" if orig.md5 else None


def _download(spec: DatasetSpec, orig: Original) -> Path:
    """Download one original into data/orig/ with pooch, which checks it against the registered hash."""
    try:
        return Path(pooch.retrieve(orig.url, known_hash=_known_hash(orig), fname=orig.filename,
                                   path=PROJECT_DATA / "orig", progressbar=False))
    except OSError as exc:  # requests' errors (offline, DNS, HTTP status, timeout) are OSErrors
        raise _not_found(spec, f"{orig.url}: {exc}") from exc
    except ValueError as exc:  # pooch: the download's hash is not the registered one (it deleted the file)
        raise ChecksumMismatch(f"{orig.filename} from {orig.url}: {exc}") from exc


def sources(name: str) -> list[str]:
    """Each upstream original of a dataset as 'URL (algorithm checksum)', or the URL alone where
    no checksum is published."""
    out = []
    for orig in get_spec(name).originals:
        known = _known_hash(orig)
        out.append(orig.url if known is None else f"{orig.url} ({known.replace(':', ' ', 1)})")
    return out


def _not_found(spec: DatasetSpec, reason: str) -> DatasetNotFound:
    looked = "\n".join(f"  - {d}" + ("" if d.is_dir() else " (does not exist)") for d in search_path())
    urls = "\n".join(f"  - {source}" for source in sources(spec.name))
    return DatasetNotFound(
        f"dataset {spec.name!r} not found. Looked for {spec.name}.npz (and the originals "
        f"{', '.join(o.filename for o in spec.originals)}) in:\n{looked}\n"
        f"Download failed: {reason}.\nGet the originals from:\n{urls}\n"
        f"and put them (or a verified {spec.name}.npz) in a directory listed in ${ENV_VAR} "
        f"(e.g. `export {ENV_VAR}=/path/to/data`), or run `python -m bench fetch {spec.name}` "
        f"on a machine with network access."
    )


def _build_from_originals(spec: DatasetSpec, download: bool) -> Path:
    """Verify (and if needed download) the originals, convert them, and cache the npz in data/."""
    files: dict[str, Path] = {}
    for orig in spec.originals:
        path = _find_original(orig)
        if path is None:
            if not download:
                raise _not_found(spec, "downloads are disabled for this call")
            path = _download(spec, orig)  # verified by pooch
        else:
            _verify_original(path, orig)
        files[orig.filename] = path
    arrays = spec.convert(files)
    out = PROJECT_DATA / f"{spec.name}.npz"

    def write_npz(tmp: Path) -> None:  # its hash is recorded before the npz appears under its name
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
        digest = file_digest(tmp)
        atomic_write(out.with_name(out.name + ".sha256"), lambda p: p.write_text(f"{digest}  {out.name}\n"))

    atomic_write(out, write_npz)  # a full disk or a kill leaves no partial npz behind
    return out


def locate(name: str) -> Path | None:
    """Path of the dataset's npz on the search path, or None (no download, no verification)."""
    spec = get_spec(name)
    for d in search_path():
        if (d / f"{spec.name}.npz").is_file():
            return d / f"{spec.name}.npz"
    return None


def is_available(name: str) -> bool:
    """True when load() would succeed without network (generated, an npz, or all originals present)."""
    spec = get_spec(name)
    if spec.generate is not None:
        return all(is_available(d) for d in spec.requires)
    return locate(name) is not None or all(_find_original(o) for o in spec.originals)


def get_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise unknown("dataset", name, DATASETS)
    return DATASETS[name]


def width(name: str, downsample: int | None = None) -> int:
    """Values per example of a registered dataset (from its declared shapes; nothing is loaded),
    after average pooling by `downsample` (see `pool`)."""
    spec = get_spec(name)
    if downsample is None:
        return next(iter(spec.shapes.values()))[1]
    if spec.image_shape is None or any(side % downsample for side in spec.image_shape):
        raise ConfigError(f"dataset {name!r} (image shape {spec.image_shape}) cannot be pooled by {downsample}: "
                          f"downsample needs images whose sides it divides")
    return spec.channels * (spec.image_shape[0] // downsample) * (spec.image_shape[1] // downsample)


def input_shape(name: str, downsample: int | None = None) -> tuple[int, int, int]:
    """(C, H, W) of a registered image dataset's examples, after pooling by `downsample`; a
    ConfigError for a dataset that is not images."""
    spec = get_spec(name)
    if spec.image_shape is None:
        raise ConfigError(f"dataset {name!r} is not images (no image shape): a convolutional model cannot read it")
    f = downsample or 1
    width(name, downsample)  # the pooling check
    return spec.channels, spec.image_shape[0] // f, spec.image_shape[1] // f


def check_width(name: str, layers: object, downsample: int | None = None) -> None:
    """A ConfigError when a model's layer sizes do not start at the dataset's width."""
    if isinstance(layers, list) and layers and layers[0] != width(name, downsample):
        raise ConfigError(f"model layers {layers} start at {layers[0]}, but dataset {name!r} has "
                          f"{width(name, downsample)} values per example: the first layer is the data's width")


def pool(x: np.ndarray, image_shape: tuple[int, int], factor: int) -> np.ndarray:
    """Average pooling of images stored as rows, x (N, C * H * W) row-major, C planes one after
    another (C = 1 for grey images) -> (N, C * (H / f) * (W / f)) float32, each value the mean of
    a f x f block of its plane (a reduced resolution)."""
    h, w = image_shape
    c = x.shape[1] // (h * w)
    blocks = x.reshape(len(x), c, h // factor, factor, w // factor, factor).astype(np.float64)
    return blocks.mean((3, 5)).reshape(len(x), -1).astype(np.float32)


def load(name: str, download: bool = True) -> Dataset:
    """Load a verified dataset by name (see the module docstring for where it is looked for)."""
    spec = get_spec(name)
    if spec.generate is not None:
        path, arrays = None, spec.generate()
    else:
        path = locate(name) or _build_from_originals(spec, download)
        _verify_npz(path, spec)
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
    x = {k[2:]: v for k, v in arrays.items() if k.startswith("x_")}
    if "x" in arrays:
        x["all"] = arrays["x"]
    y = {k[2:]: v for k, v in arrays.items() if k.startswith("y_")}
    for split, shape in spec.shapes.items():
        if split not in x or x[split].shape != shape:
            got = x[split].shape if split in x else "missing"
            raise ChecksumMismatch(f"{path}: split {split!r} has shape {got}, expected {shape}")
    return Dataset(spec.name, x, y, spec.binary, spec.image_shape, path)


def fetch(name: str) -> Path:
    """Download (if needed), verify and convert one dataset; return the npz path."""
    return load(name, download=True).path  # type: ignore[return-value]

