"""The cost estimate of a profile (bench/perf/estimate.py, `python -m bench plan --estimate`): it
lists every run the workflow would train, each once, projects positive seconds that scale with the
budget, sizes the splits as the data preparation does, and the command line prints its totals."""

from __future__ import annotations

import csv
import time
from dataclasses import replace

import pytest
import torch

from bench.claims.catalog import expand, get_claim
from bench.claims.tuning import CONFIGS, grid, tuning_spec
from bench.cli import main
from bench.engine.train import prepare_data
from bench.perf import estimate as cost

CLAIMS = ("rws-beats-ws", "rws-more-samples-help")  # they share the label RWS K=5


@pytest.fixture(autouse=True)
def keep_threads():
    """The estimate measures with one thread, as a workflow run does; give the others theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def plans():
    return [expand(get_claim(c), "smoke") for c in CLAIMS]


@pytest.fixture(scope="module")
def meter():
    return cost.Meter(torch.device("cpu"), warmup=1, steps=2)


def test_the_estimate_lists_every_run_once(plans, meter, tmp_path):
    expected = {}
    for plan in plans:
        for base in plan.runs.values():
            expected[base.run_id] = "evaluation"  # not tuned yet: the base spec stands in
            for point in grid(base, CONFIGS["smoke"]):
                expected[tuning_spec(base, point).run_id] = "tuning"
    est = cost.estimate(plans, tmp_path / "results", device="cpu", threads=None, warmup=1, steps=2, max_seconds=2,
                        min_eval_seconds=0.02)
    ids = [p.job.run_id for p in est.runs]
    assert len(ids) == len(set(ids)), "a run is counted once"
    assert {p.job.run_id: p.job.kind for p in est.runs} == expected
    shared = {p.job.run_id for p in est.runs if p.job.shared}
    rws5 = plans[0].runs["RWS K=5"]
    assert rws5.run_id in shared and all(not p.job.shared for p in est.runs if p.job.base_run_id != rws5.run_id)
    assert all(p.seconds > 0 and p.train_seconds > 0 for p in est.runs)
    assert est.total_seconds == pytest.approx(sum(p.seconds for p in est.runs))
    # a claim's share counts its shared runs; the total counts them once
    per_claim = sum(sum(p.seconds for p in est.claim_rows(plan.claim.id)) for plan in plans)
    assert per_claim > est.total_seconds


def test_the_step_part_scales_with_the_epochs(plans, meter):
    base = plans[0].runs["WS"]
    one, two = (cost.project(cost.Job(replace(base, epochs=e), "evaluation", base.run_id), meter) for e in (2, 4))
    assert one.steps_total * 2 == two.steps_total
    assert two.train_seconds == pytest.approx(2 * one.train_seconds)
    assert two.seconds > one.seconds > 0
    assert two.curve_evaluations == 2 * one.curve_evaluations - 1  # epoch 0, then one per epoch


def test_per_seed_timing_trains_each_seed_alone(plans, meter):
    base = plans[0].runs["WS"]
    lock = cost.project(cost.Job(base, "evaluation", base.run_id), meter)
    alone = cost.project(cost.Job(replace(base, timing="per_seed"), "evaluation", base.run_id), meter)
    assert alone.groups == len(base.seeds) and lock.groups == 1
    assert alone.steps_total == len(base.seeds) * lock.steps_total


@pytest.mark.parametrize("claim, label", [("rws-beats-ws", "WS"), ("aevb-beats-ws-frey", "AEVB N_z=2")])
def test_split_sizes_are_those_of_the_prepared_data(claim, label):
    base = expand(get_claim(claim), "smoke").runs[label]
    for spec in (base, tuning_spec(base, grid(base, CONFIGS["smoke"])[0])):
        prepared = prepare_data(spec, torch.device("cpu"))
        sizes = cost.split_sizes(spec)
        assert {s: sizes[s] for s in prepared} == {s: x.shape[0] for s, (x, _) in prepared.items()}


def test_the_command_line_prints_the_totals(tmp_path, capsys):
    out = tmp_path / "estimate.csv"
    assert main(["plan", "--profile", "smoke", "--claims", "rws-beats-ws", "--estimate", "--share", "2",
                 "--root", str(tmp_path), "--estimate-out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "rws-beats-ws:" in text and "shared 2 ways" in text
    total = [line for line in text.splitlines() if line.startswith("total:")]
    assert total and "h serial" in total[0]
    with out.open() as f:
        table = list(csv.DictReader(f))
    assert len(table) == 2 * (CONFIGS["smoke"] + 1) and all(float(r["seconds"]) > 0 for r in table)
    assert main(["plan", "--profile", "smoke", "--claims", "rws-beats-ws", "--estimate", "--root", str(tmp_path),
                 "--estimate-out", str(tmp_path / "estimate.json")]) == 0
    assert '"serial"' in (tmp_path / "estimate.json").read_text()


def test_kept_measurements_are_reused_and_tied_to_their_device(plans, tmp_path):
    """--estimate-keep: a second estimate reads the first one's measurements (it measures nothing
    and projects the same seconds); measurements of another device are refused."""
    keep = tmp_path / "kept.json"
    options = dict(device="cpu", threads=None, warmup=1, steps=2, max_seconds=2, min_eval_seconds=0.02, keep=keep)
    first = cost.estimate(plans[:1], tmp_path / "results", **options)
    assert keep.exists()
    measured = []
    again = cost.estimate(plans[:1], tmp_path / "results", log=measured.append, **options)
    assert len(measured) == 1 and "read from" in measured[0], "nothing is measured again"
    assert [p.seconds for p in again.runs] == pytest.approx([p.seconds for p in first.runs])
    doc = keep.read_text().replace('"device": "cpu', '"device": "NVIDIA H200 (was cpu')
    keep.write_text(doc)
    with pytest.raises(ValueError, match="taken on 'NVIDIA H200"):
        cost.Meter(torch.device("cpu"), keep=keep)


def test_a_run_that_fails_here_is_listed_not_fatal(plans, tmp_path, monkeypatch):
    """A run that cannot be built or stepped on this device (say an optimizer without a kernel for
    it) is listed under NOT MEASURED with its error; the others are still projected."""
    failing = plans[0].runs["WS"].method
    real = cost.Meter.measure

    def measure(self, spec):
        if spec.method == failing:
            raise RuntimeError("no kernel for this device")
        return real(self, spec)

    monkeypatch.setattr(cost.Meter, "measure", measure)
    est = cost.estimate(plans[:1], tmp_path / "results", device="cpu", threads=None, warmup=1, steps=2, max_seconds=2,
                        min_eval_seconds=0.02)
    assert est.failed and all("no kernel for this device" in why for why in est.failed.values())
    assert est.runs and all(p.job.spec.method != failing for p in est.runs)
    assert "NOT MEASURED" in cost.table(est)


def test_adagrad_is_fused_only_on_the_cpu(monkeypatch):
    """torch has no fused Adagrad kernel for CUDA (torch 2.11 raises RuntimeError on an H200):
    make_optimizer asks for it on the CPU alone; SGD and Adam keep theirs on CUDA."""
    from types import SimpleNamespace

    from bench.nn import optim

    asked = {}
    for name in ("Adagrad", "Adam", "SGD"):
        monkeypatch.setattr(torch.optim, name, lambda params, name=name, **kw: asked.__setitem__(name, kw))
    on_gpu = [SimpleNamespace(device=torch.device("cuda", 0))]
    for rule, torch_name in (("adagrad", "Adagrad"), ("adam", "Adam"), ("sgd", "SGD")):
        optim.make_optimizer(on_gpu, rule, lr=0.1)
        assert asked[torch_name].get("fused") is (None if rule == "adagrad" else True), rule
    optim.make_optimizer([SimpleNamespace(device=torch.device("cpu"))], "adagrad", lr=0.1)
    assert asked["Adagrad"]["fused"] is True


def test_a_packed_grid_is_costed_as_one_run_of_its_points_as_replicas(plans, tmp_path):
    """With pack=True every point of a packable label's grid is charged 1/n of one lock-step run of
    its n points as replicas; K-FAC's grid (lr and damping) is not packed."""
    jobs = cost.enumerate_jobs(plans, tmp_path, pack=True)
    tuning = [j for j in jobs.values() if j.kind == "tuning"]
    assert tuning and all(j.packed == CONFIGS["smoke"] for j in tuning)
    assert all(j.packed == 1 for j in jobs.values() if j.kind == "evaluation")
    kfac = [expand(get_claim("kfac-fewer-updates-than-sgd"), "smoke")]
    assert {j.packed for j in cost.enumerate_jobs(kfac, tmp_path, pack=True).values()
            if j.kind == "tuning" and j.spec.method == "kfac"} == {1}
    meter = cost.Meter(torch.device("cpu"), warmup=1, steps=2, max_seconds=2, min_eval_seconds=0.02)
    job = tuning[0]
    share = cost.project(job, meter)
    whole = cost.project(cost.Job(replace(job.spec, seeds=job.spec.seeds * job.packed), "tuning", job.base_run_id),
                         meter)
    assert share.seconds * job.packed == pytest.approx(whole.seconds)
    assert "packed tuning runs as replicas" in share.why()


class _FixedCostLoop:
    """A stand-in for bench.engine.loop.Loop whose evaluation costs `seconds` whatever the examples
    (an RBM's AIS log Z), longer than the meter's max_seconds."""

    def __init__(self, seconds: float, n: int = 1000):
        self.seconds = seconds
        self.eval_sets = {"test": (torch.zeros(n, 3), None)}
        self.rows: list = []

    def evaluate(self, k: int, splits: tuple[str, ...]) -> None:
        time.sleep(self.seconds)


def test_a_fixed_evaluation_cost_is_not_projected_per_example():
    """One slice cannot separate a fixed part from a per-example one; projecting a slow first
    slice as all per-example made one RBM run's AIS evaluation 10^4 times too long."""
    meter = cost.Meter(torch.device("cpu"), warmup=1, steps=2, max_seconds=0.05, min_eval_seconds=0.01)
    fit = meter._time_evaluation(_FixedCostLoop(0.1), k=10, warm=True)
    assert len(fit.examples) >= 2
    assert fit(1000) < 0.5, f"a fixed 0.1 s evaluation projected to {fit(1000):.1f} s for 1000 examples"
    assert fit.fixed > 0.05
