"""One run (DESIGN.md, "The life of a run"): its data, its groups of seeds, its run.json.

R seeds train in lock-step as replicas of one model (bench.engine.loop), or, with ``timing:
per_seed`` (claims about training time), one seed at a time, each with its own clock. Either way a
seed's numbers are the same: each replica draws its sampling noise from its own generator
(bench.nn.noise). The run's status is ``ok`` or ``diverged`` (some seed diverged); the verdicts
leave diverged seeds out and say so. With a checkpoint folder, a killed run resumes where its last
checkpoint left it (bench.engine.loop), and a per-seed run keeps the seeds it finished.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from bench.core import devices
from bench.core.errors import ConfigError
from bench.core.layout import atomic_write
from bench.core.missing import mcar
from bench.core.spec import RunSpec
from bench.engine import data as datasets
from bench.engine import results
from bench.engine.loop import Data, Loop
from bench.engine.methods import get_method, source_files
from bench.nn import noise, optim
from bench.workloads import workload_for


def prepare_data(spec: RunSpec, device: torch.device) -> dict[str, tuple[Tensor, Tensor | None]]:
    """Split name -> (x float (N, D), labels (N,) or None) on the device.

    transform: 'none' keeps binary data as 0/1 (grey data must pick a transform),
    'unit_interval' divides grey pixels by 255, 'dynamic_binarize' keeps grey/255 as Bernoulli
    means and the loop draws a fresh binarization of each training batch (IWAE-style).
    holdout: a dataset without a validation split gets the last `holdout` training examples as
    'valid'; one stored as a single 'all' array (Frey faces) is shuffled once with a fixed seed and
    split into 'train' and the last `holdout` examples as 'test'. train_subset then applies to train.
    carve_valid (tuning runs): the last `carve_valid` examples of the training subset become 'valid'
    and the rest 'train', whatever validation split the dataset has.
    held_out_classes: examples of these labels leave 'train' and 'valid' last (after the subset and
    the carving, so a run with held-out classes trains on fewer examples than train_subset); 'test'
    keeps them (the unseen classes a classifier's predictive is probed on).
    downsample: every split is average-pooled by this factor (grey images, scaled to [0, 1] first).
    missing_rate: the training split (before carve_valid and train_subset, so a carved validation
    split is incomplete too) gets NaN at the entries of one fixed MCAR mask (bench.core.missing.mcar,
    the same for every method and seed of every claim); examples left with no observed value are
    dropped (the filter_fully_missing of Simkus et al. 2023). The test split stays complete.
    """
    ds = datasets.load(spec.dataset)
    if not ds.binary and spec.transform == "none":
        raise ConfigError(
            f"dataset {spec.dataset!r} is grey-scale: set transform to 'unit_interval' or 'dynamic_binarize'"
        )
    x, y = dict(ds.x), dict(ds.y)
    if spec.holdout:
        if "all" in x:
            order = np.random.default_rng(0).permutation(len(x["all"]))
            x["train"], x["test"] = x["all"][order[:-spec.holdout]], x["all"][order[-spec.holdout:]]
        elif "valid" not in x:
            x["valid"], x["train"] = x["train"][-spec.holdout:], x["train"][:-spec.holdout]
            if "train" in y:
                y["valid"], y["train"] = y["train"][-spec.holdout:], y["train"][:-spec.holdout]
    if spec.downsample is not None:
        scale = 255.0 if not ds.binary else 1.0
        x = {split: datasets.pool(xs / scale, ds.image_shape, spec.downsample) for split, xs in x.items()}
    if spec.missing_rate is not None:
        if y:
            raise ConfigError(f"missing_rate masks unlabelled data only; dataset {spec.dataset!r} has labels")
        train = x["train"].astype(np.float32) / np.float32(255.0 if x["train"].dtype == np.uint8 and not ds.binary else 1.0)
        missing = mcar(train.shape, spec.missing_rate)
        x["train"] = np.where(missing, np.float32(np.nan), train)[~missing.all(1)]
    if spec.labels and not y:
        raise ConfigError(f"dataset {spec.dataset!r} has no labels, but the run asks for them (labels: true)")
    if spec.carve_valid:  # a validation split carved from the (subset of the) training data, for tuning
        n = spec.carve_valid
        subset = slice(None, spec.train_subset)
        x["train"], x["valid"] = x["train"][subset][:-n], x["train"][subset][-n:]
        if "train" in y:
            y["train"], y["valid"] = y["train"][subset][:-n], y["train"][subset][-n:]
    out = {}
    for split, xs in x.items():
        ys = y.get(split) if spec.labels else None
        if split == "train" and spec.train_subset is not None:
            xs = xs[: spec.train_subset]
            ys = ys[: spec.train_subset] if ys is not None else None
        if split in ("train", "valid") and spec.held_out_classes:
            seen = ~np.isin(ys, spec.held_out_classes)
            xs, ys = xs[seen], ys[seen]
        scale = 255.0 if xs.dtype == np.uint8 and not ds.binary else 1.0
        out[split] = (torch.as_tensor(xs, dtype=torch.float32, device=device) / scale,
                      None if ys is None else torch.as_tensor(ys.astype(np.int64), device=device))
    return out


def dataset_checksum(name: str) -> str:
    """sha256 of the dataset file the run read ('generated' for a paper's in-memory toy)."""
    path = datasets.locate(name)
    return datasets.file_digest(path) if path is not None else "generated"


@dataclass
class _Trained:
    """What one lock-step group of seeds produced."""

    frame: pd.DataFrame
    seeds: dict[str, dict[str, Any]]  # seed -> status record
    train_seconds: float
    steps_per_epoch: int
    resumed: bool  # trained in two or more sessions (a checkpoint was resumed)
    params: dict[str, Tensor] | None  # the model's final state (name -> (R, ...)) when the spec keeps it


def run(spec: RunSpec, out_dir: Path, device: str = "auto", threads: int | None = None,
        progress: bool = True, checkpoints: Path | None = None, checkpoint_every: float = 300.0) -> dict[str, Any]:
    """Train and evaluate one run; write curve.parquet (and, when spec.keep_params, the final
    parameters: bench.engine.results.PARAMS) and run.json to out_dir. Returns run.json.
    `checkpoints`: a folder for this run's checkpoints (written every `checkpoint_every` seconds
    at an epoch boundary, removed once run.json is written), from which a killed run resumes."""
    dev, started, method_cls = _start(spec, device, threads)
    data = prepare_data(spec, dev)
    groups = [(s,) for s in spec.seeds] if spec.timing == "per_seed" else [spec.seeds]
    paths = [None if checkpoints is None else Path(checkpoints) / f"{spec.run_id}.seeds-{'-'.join(map(str, g))}.pt"
             for g in groups]
    parts = [_group(replace(spec, seeds=g), spec.run_id, data, dev, path, checkpoint_every, progress, keep=len(groups) > 1)
             for g, path in zip(groups, paths)]
    seeds = {seed: record for part in parts for seed, record in part.seeds.items()}
    meta = _meta(spec, seeds, parts, dev, started, method_cls)
    params = None
    if spec.keep_params:
        params = {"seeds": list(spec.seeds),
                  "state": {name: torch.cat([part.params[name] for part in parts]) for name in parts[0].params}}
    results.write_run(Path(out_dir), pd.concat([part.frame for part in parts], ignore_index=True), meta, params)
    for path in paths:
        if path is not None:
            path.unlink(missing_ok=True)
    return meta


def run_packed(specs: list[RunSpec], out_dirs: list[Path], device: str = "auto", threads: int | None = None,
               progress: bool = True, checkpoints: Path | None = None,
               checkpoint_every: float = 300.0) -> list[dict[str, Any]]:
    """Train runs that differ only in their learning rate, each of one seed (the tuning grid of a
    label: bench.claims.tuning), as the R = len(specs) replicas of one lock-step run: one seed's
    initialisation, data order and noise for every replica, replica r's optimizer at specs[r]'s lr
    (bench.nn.optim.replica_learning_rates; the method must declare `packs_lr`). Each run's rows,
    status and run.json are written to its own out_dir as if it had trained alone (its numbers equal
    that run's up to float rounding; run.json's `packed` names the runs it trained with, and its
    train_seconds are the packed run's). On a GPU, where a step of these small models costs about
    the same for 1 or 9 replicas, a grid costs about one run (results/perf/replicas-cuda.txt).
    Returns the runs' run.json. A ConfigError when the specs cannot be packed."""
    _check_packable(specs)
    base = specs[0]
    dev, started, method_cls = _start(base, device, threads)
    data = prepare_data(base, dev)
    packed = replace(base, seeds=base.seeds * len(specs))
    ids = " ".join(s.run_id for s in specs)
    packed_id = f"{base.run_id}.packed-{hashlib.sha256(ids.encode()).hexdigest()[:12]}"
    path = None if checkpoints is None else Path(checkpoints) / f"{packed_id}.pt"
    scale = torch.tensor([s.hparams["lr"] / base.hparams["lr"] for s in specs], dtype=torch.float32, device=dev)
    with optim.replica_learning_rates(scale):
        part = _group(packed, packed_id, data, dev, path, checkpoint_every, progress, keep=False,
                      replica_names=list(range(len(specs))))
    metas = []
    for r, (spec, out_dir) in enumerate(zip(specs, out_dirs)):
        seed = spec.seeds[0]
        frame = part.frame[part.frame.seed == r].assign(seed=seed, run_id=spec.run_id).reset_index(drop=True)
        meta = _meta(spec, {str(seed): part.seeds[str(r)]}, [part], dev, started, method_cls)
        meta["packed"] = {"replica": r, "run_ids": [s.run_id for s in specs],
                          "lr": [s.hparams["lr"] for s in specs]}
        results.write_run(Path(out_dir), frame, meta, None)
        metas.append(meta)
    if path is not None:
        path.unlink(missing_ok=True)
    return metas


def packable(specs: list[RunSpec]) -> str | None:
    """Why these runs cannot train as the replicas of one run (None: they can): they must be one
    seed each, the same seed, of a method that declares `packs_lr`, keep no parameters, and differ
    in hparams['lr'] alone."""
    if len(specs) < 2:
        return "fewer than 2 runs"
    base = specs[0]
    if not get_method(base.method).packs_lr:
        return f"method {base.method!r} does not declare packs_lr (its lr acts elsewhere than its optimizer)"
    if any(len(s.seeds) != 1 or s.seeds != base.seeds or s.keep_params for s in specs):
        return "the runs must each have the same single seed and keep no parameters"

    def without_lr(s: RunSpec) -> dict[str, Any]:
        d = s.to_dict()
        d["hparams"] = {k: v for k, v in d["hparams"].items() if k != "lr"}
        return d

    if any(without_lr(s) != without_lr(base) for s in specs) or any(float(s.hparams.get("lr", 0)) <= 0 for s in specs):
        return "the runs must differ in their (positive) learning rate alone"
    return None


def _check_packable(specs: list[RunSpec]) -> None:
    if why := packable(specs):
        raise ConfigError(f"cannot train {len(specs)} runs as replicas of one run: {why}")


def _start(spec: RunSpec, device: str, threads: int | None) -> tuple[torch.device, str, type]:
    """The device, the start time and the method class of a run, after the checks that need no data."""
    if threads:
        torch.set_num_threads(threads)
    dev = devices.resolve(device)
    started = dt.datetime.now(dt.timezone.utc).isoformat()
    method_cls = get_method(spec.method)
    if mismatch := method_cls.family_mismatch(spec.model["family"], "the run's model"):
        raise ConfigError(mismatch)
    workload_for(spec.model["family"]).check_transform(spec.model, spec.transform)
    return dev, started, method_cls


def _meta(spec: RunSpec, seeds: dict[str, dict[str, Any]], parts: list[_Trained], dev: torch.device, started: str,
          method_cls: type) -> dict[str, Any]:
    """run.json of a run trained in `parts` (its lock-step groups)."""
    return {
        "run_id": spec.run_id,
        "spec": spec.to_dict(),
        "status": "ok" if all(s["status"] == "ok" for s in seeds.values()) else "diverged",
        "seeds": seeds,
        "steps_per_epoch": parts[0].steps_per_epoch,
        "train_seconds": sum(part.train_seconds for part in parts),
        "timing": spec.timing,
        "resumed": any(part.resumed for part in parts),
        "device": results.device_name(str(dev)),
        "dataset_sha256": dataset_checksum(spec.dataset),
        "git": results.git_state(),
        "method_sources": results.sources_hash(source_files(method_cls)),
        "bench_sources": results.sources_hash(results.bench_sources()),
        "packages": results.package_versions(),
        "started": started,
        "finished": dt.datetime.now(dt.timezone.utc).isoformat(),
    }


def _group(spec: RunSpec, run_id: str, data: Data, dev: torch.device, checkpoint: Path | None,
           checkpoint_every: float, progress: bool, keep: bool, replica_names: list[int] | None = None) -> _Trained:
    """Train one lock-step group of seeds, resuming from its checkpoint; `keep`: leave the finished
    group in its checkpoint (a per-seed run killed later does not train it again)."""
    saved = None
    if checkpoint is not None and checkpoint.exists():
        saved = torch.load(checkpoint, map_location=dev, weights_only=False)
        if saved.get("run_id") == run_id and saved.get("finished") is not None:
            return saved["finished"]
    with noise.replica_noise(spec.seeds, dev):
        loop = Loop(spec, run_id, data, dev, replica_names)
        frame, seeds = loop.run(checkpoint, checkpoint_every, progress, saved)
    params = ({name: value.detach().cpu().clone() for name, value in loop.model.state_dict().items()}
              if spec.keep_params else None)
    part = _Trained(frame, seeds, loop.clock["train_seconds"], loop.steps_per_epoch, loop.resumed, params)
    if checkpoint is not None and keep:
        atomic_write(checkpoint, lambda p: torch.save({"run_id": run_id, "finished": part}, p))
    return part
