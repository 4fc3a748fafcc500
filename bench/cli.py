"""`python -m bench`: list claims/methods/datasets, run one run, scaffold a method, verdicts, report.

    python -m bench list
    python -m bench run --method rws --dataset binarized_mnist --layers 784,100,10 --epochs 2 --set k=5
    python -m bench new-method my_method
    python -m bench plan --profile quick
    python -m bench plan --profile paper --claims nrws-final-ll --json   # specs for `run --spec`
    python -m bench verdict rws-beats-ws --profile quick
    python -m bench report --profile quick
    python -m bench fetch binarized_mnist
    python -m bench tune foof-beats-kfac FOOF --profile paper --grid lr=0.1,1 damping=1,10
    python -m bench perf [NAMES]
"""

from __future__ import annotations

# The report, tuning-search and benchmark modules (matplotlib, seaborn, scipy.stats) are imported by
# the commands that use them: the workflow starts one process per run, and each would pay ~1.4 s.
import argparse
import json
import sys
from dataclasses import MISSING, fields
from pathlib import Path

import torch
from pydantic import ValidationError

import methods
from bench.claims.catalog import check_profile, get_claim, load_claims, plan_all
from bench.claims.schema import hparams_model
from bench.claims.tuning import evaluation_spec, read_selection, select, selection_words, trained_packed
from bench.core.errors import ClaimbenchError, ConfigError
from bench.core.layout import checkpoint_dir, run_dir
from bench.core.spec import RunSpec, parse_scalar
from bench.engine import data, train
from bench.engine.methods import all_methods, get_method, resolve_hparams

TEMPLATE = Path(__file__).resolve().parent / "templates" / "method.py.txt"


def cmd_list(args: argparse.Namespace) -> None:
    """Every claim, method and dataset; a dataset with where it was found here, its canonical URLs and
    checksums (bench/engine/data.py's registry)."""
    print("claims:")
    for claim in load_claims().values():
        print(f"  {claim.id:32s} [{claim.source.name}] {claim.spec['statement']}")
    print("methods:")
    for name, cls in sorted(all_methods().items()):
        print(f"  {name:12s} family={'/'.join(cls.trained_families()):10s} defaults={json.dumps(cls.defaults)}")
    print("datasets:")
    for name, spec in data.DATASETS.items():
        where = data.locate(name)
        state = str(where) if where else ("originals present" if data.is_available(name) else "not available here")
        print(f"  {name:28s} {spec.description} -- {state}")
        for source in data.sources(name):  # the canonical upstream files, each with its checksum
            print(f"      from {source}")
        if spec.npz_sha256:
            print(f"      {name}.npz sha256 {spec.npz_sha256}")


def _key_values(items: list[str], flag: str) -> dict:
    """KEY=VALUE flags, each value read as YAML (5, 1e-3, true, [[200, 200]], adam)."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"{flag} {item!r}: write key=value")
        key, value = item.split("=", 1)
        out[key] = parse_scalar(value)
    return out


def _count(text: str) -> int:
    """An argparse type: a whole number of at least 1 (a size, a count, a number of epochs)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _ints(text: str, flag: str, example: str) -> list[int]:
    """Comma-separated integers of a flag (--layers, --seeds), or a ConfigError showing the form."""
    try:
        return [int(s) for s in text.split(",")]
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: write comma-separated whole numbers, e.g. {flag} {example}") from None


REQUIRED_SPEC_KEYS = [f.name for f in fields(RunSpec) if f.default is MISSING and f.default_factory is MISSING]


def _spec_from_json(text: str) -> RunSpec:
    """A --spec argument as a RunSpec, or a ConfigError saying what is wrong with it."""
    how = "pass one line of `python -m bench plan --json` (quoted as one argument)"
    try:
        d = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--spec is not valid JSON ({exc}); {how}") from None
    if not isinstance(d, dict):
        raise ConfigError(f"--spec must be a JSON object (a run spec), got {type(d).__name__}; {how}")
    missing = [key for key in REQUIRED_SPEC_KEYS if key not in d]
    if missing:
        raise ConfigError(f"--spec lacks the key{'s' * (len(missing) > 1)} {', '.join(missing)}; {how}")
    return RunSpec.from_dict(d)


def _check_spec(spec: RunSpec, flag: str) -> None:
    """What would otherwise fail inside training with a traceback: an unknown method or dataset, a
    bad hyper-parameter value, a model whose first layer is not the data's width."""
    cls = get_method(spec.method)
    try:
        hparams_model(cls).model_validate(spec.hparams)
    except ValidationError as err:
        first = err.errors()[0]
        ctx = first.get("ctx") or {}
        if first["type"] == "unknown_key":
            raise ConfigError(f"{flag}: {ctx['what']}; allowed keys: {', '.join(sorted(cls.defaults))}") from None
        key = first["loc"][0] if first["loc"] else "?"
        reason = ctx.get("reason") or first["msg"].replace("Input should be", "must be")
        raise ConfigError(f"{flag} {key}={spec.hparams.get(key)!r}: {reason} (method {cls.name!r}, default "
                          f"{cls.defaults.get(key)!r})") from None
    layers = spec.model.get("layers")
    try:
        data.check_width(spec.dataset, layers, spec.downsample)
    except ConfigError as exc:
        fix = ",".join(map(str, [data.width(spec.dataset, spec.downsample), *layers[1:]]))
        raise ConfigError(f"{exc} (e.g. --layers {fix})") from None


def _check_device(device: str) -> None:
    """--device names a device this machine has (auto picks one itself)."""
    if device == "auto":
        return
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"--device {device!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device!r}: CUDA is not available on this machine (no GPU, or a torch build "
                          f"without CUDA); use --device auto or cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"--device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                          f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")


def cmd_run(args: argparse.Namespace) -> None:
    _check_device(args.device)
    if args.spec:
        spec = _spec_from_json(args.spec)
    else:
        missing = [f"--{k}" for k in ("method", "dataset", "layers") if getattr(args, k) is None]
        if missing:
            raise ConfigError(f"run needs {', '.join(missing)} (or --spec JSON)")
        overrides = _key_values(args.set, "--set")
        cls = get_method(args.method)
        layers = _ints(args.layers, "--layers", "784,200,10")
        model = {"family": cls.family, "layers": layers, **_key_values(args.model, "--model")}
        seeds = _ints(args.seeds, "--seeds", "0,1,2")
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"--seeds {args.seeds!r} repeats a seed; each seed is one replica, e.g. --seeds 0,1,2")
        spec = RunSpec(
            profile=args.profile, dataset=args.dataset, method=cls.name, model=model,
            hparams=resolve_hparams(cls, overrides), seeds=tuple(seeds),
            epochs=args.epochs, batch_size=args.batch_size, train_subset=args.train_subset,
            transform=args.transform, eval_k=args.eval_k, eval_subset=args.eval_subset,
            final_eval_k=args.final_eval_k,
        )
    _check_spec(spec, "--spec" if args.spec else "--set")
    out = run_dir(Path(args.results), spec.profile, spec.run_id)
    meta = train.run(spec, out, device=args.device, threads=args.threads, progress=not args.quiet,
                     checkpoints=checkpoint_dir(Path(args.results), spec.profile), checkpoint_every=args.checkpoint_every)
    print(f"{spec.run_id}: {meta['status']} in {meta['train_seconds']:.1f} train seconds on {meta['device']} -> {out}")


def cmd_new_method(args: argparse.Namespace) -> None:
    name = args.name
    if not name.isidentifier() or name.startswith("_"):
        raise ConfigError(f"method name {name!r} must be a Python identifier (letters, digits, _), e.g. my_rws")
    target = Path(methods.__path__[0]) / f"{name}.py"
    if target.exists():
        raise ConfigError(f"{target} already exists; pick another name or edit that file")
    target.write_text(TEMPLATE.read_text().replace("{{name}}", name).replace("{{Class}}", name.title().replace("_", "")))
    print(f"wrote {target}\nnext: edit its step(), name it in a claim (bench/claims/*.yaml, under `methods:`), "
          f"then rerun `snakemake --cores all`; only the new runs execute.")


def cmd_plan(args: argparse.Namespace) -> None:
    """Human-readable plan, or with --json one RunSpec per line for driving the two stages without
    Snakemake: `--stage tune` (the default) lists each label's base configuration, for `select`;
    `--stage eval` the tuned evaluation runs, for `run` (after every selection exists)."""
    plans = [plan for plan in plan_all(args.profile) if not args.claims or plan.claim.id in args.claims]
    results = Path(args.root) / "results"
    if args.estimate:  # the profile's cost, measured here (bench/perf/estimate.py)
        from bench.perf import estimate as cost

        est = cost.estimate(plans, results, share=args.share, keep=args.estimate_keep,
                            log=lambda line: print(line, file=sys.stderr, flush=True))
        print(cost.table(est))
        if args.estimate_out:
            print(f"wrote {cost.write(est, Path(args.estimate_out))}")
        return
    if args.json:
        specs = {}
        for plan in plans:
            for label, base in plan.runs.items():
                spec = base if args.stage == "tune" else evaluation_spec(results, base, plan.claim.id, label)
                specs[spec.run_id] = spec
        print("\n".join(spec.to_json() for spec in specs.values()))
        return
    for plan in plans:
        print(f"{plan.claim.id}:" + (f" {plan.unavailable}" if plan.unavailable else ""))
        for label, base in plan.runs.items():
            selection = read_selection(results, base)
            tuned = f"-> {selection['eval_run_id']} {selection_words(selection)}" if selection else "(not tuned yet)"
            print(f"  {base.run_id}  {label:24s} {base.method} {json.dumps(base.hparams)} {tuned}")


def cmd_select(args: argparse.Namespace) -> None:
    spec = _spec_from_json(args.spec)
    _check_spec(spec, "--spec")
    pack = {"auto": None, "yes": True, "no": False}[args.pack]
    selection = select(spec, Path(args.results), threads=args.threads or 1, pack=pack)
    packed = trained_packed(selection, Path(args.results), spec.profile)
    how = f"; {packed} of {len(selection['points'])} points trained packed, as the replicas of one run" if packed else ""
    print(f"{selection['base_run_id']} -> {selection['eval_run_id']}: {selection_words(selection)}{how}")


def cmd_verdict(args: argparse.Namespace) -> None:
    from bench.report.markdown import no_zero_width
    from bench.report.verdicts import evaluate_claim

    check_profile(args.profile)
    outcome = evaluate_claim(get_claim(args.claim), args.profile, Path(args.root))
    print(f"{args.claim} [{args.profile}]: {outcome['verdict']} -- {no_zero_width(outcome['detail'])}")


def cmd_interpolate(args: argparse.Namespace) -> None:
    from bench.report.interpolation import write_interpolation

    check_profile(args.profile)
    out = write_interpolation(get_claim(args.claim), args.profile, Path(args.root))
    print(f"wrote {out['table']} and {out['figure']}")


def cmd_report(args: argparse.Namespace) -> None:
    from bench.report.verdicts import write_report, write_summary

    check_profile(args.profile)
    write_summary(Path(args.root), args.profile)
    print(f"wrote {write_report(Path(args.root), args.profile)}")


def cmd_fetch(args: argparse.Namespace) -> None:
    print(f"{args.dataset}: {data.fetch(args.dataset)}")


def cmd_tune(args: argparse.Namespace) -> None:
    from bench.claims.tune import parse_grid, tune

    table = tune(args.claim, args.label, args.profile, args.updates, parse_grid(args.grid), args.jobs, Path(args.results))
    print(table.to_string(index=False))


def cmd_perf(args: argparse.Namespace) -> None:
    from bench.perf import run_benchmarks

    run_benchmarks(args.names, args.device, Path(args.out))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="claims, methods and datasets").set_defaults(func=cmd_list)

    r = sub.add_parser("run", help="one run from flags (or a --spec JSON), without Snakemake")
    r.add_argument("--spec", help="a RunSpec as JSON (what the workflow passes)")
    r.add_argument("--method"), r.add_argument("--dataset")
    r.add_argument("--layers", help="comma-separated sizes from the data side, e.g. 784,200,200,10")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="hyper-parameter override")
    r.add_argument("--model", action="append", default=[], metavar="KEY=VALUE",
                   help="model config beyond the layers, e.g. --model hidden=[[200,200]] for the vae family")
    r.add_argument("--seeds", default="0"), r.add_argument("--epochs", type=_count, default=1)
    r.add_argument("--batch-size", type=_count, default=100), r.add_argument("--train-subset", type=_count)
    r.add_argument("--transform", default="none")
    r.add_argument("--eval-k", type=_count, default=100), r.add_argument("--eval-subset", type=_count, default=1000)
    r.add_argument("--final-eval-k", type=_count, default=1000)
    r.add_argument("--profile", default="adhoc", help="results go to <results>/<profile>/runs/<run-id>")
    r.add_argument("--results", default="results"), r.add_argument("--device", default="auto")
    r.add_argument("--threads", type=_count), r.add_argument("--quiet", action="store_true")
    r.add_argument("--checkpoint-every", type=float, default=300.0, metavar="SECONDS",
                   help="checkpoint at the first epoch end after this many seconds; a killed run resumes from it")
    r.set_defaults(func=cmd_run)

    n = sub.add_parser("new-method", help="write a commented method template into methods/")
    n.add_argument("name")
    n.set_defaults(func=cmd_new_method)

    for name, func, helptext in (("plan", cmd_plan, "runs each claim needs"), ("report", cmd_report, "REPORT.md + summary")):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("--profile", default="quick"), s.add_argument("--root", default=".")
        s.set_defaults(func=func)
        if name == "plan":
            s.add_argument("--claims", nargs="*", help="only these claim ids")
            s.add_argument("--json", action="store_true", help="one RunSpec JSON per line, each run once")
            s.add_argument("--stage", choices=("tune", "eval"), default="tune",
                           help="tune: each label's base configuration (for `select`); eval: the tuned runs (for `run`)")
            s.add_argument("--estimate", action="store_true",
                           help="measure a few steps of every run here; print the projected hours per claim and in total")
            s.add_argument("--share", type=_count, default=4, metavar="N",
                           help="with --estimate: also the hours with the device shared N ways (serial total / N)")
            s.add_argument("--estimate-out", metavar="FILE", help="with --estimate: one row per run (.csv) or all (.json)")
            s.add_argument("--estimate-keep", metavar="FILE", type=Path,
                           help="with --estimate: keep the measurements in FILE and reuse those already there (a "
                                "stopped estimate continues; parts measured on several machines add up)")
    c = sub.add_parser("select", help="equal-budget tuning of one base configuration (bench/claims/tuning.py)")
    c.add_argument("--spec", required=True, help="a base RunSpec as JSON (plan --stage tune --json)")
    c.add_argument("--results", default="results"), c.add_argument("--threads", type=_count)
    c.add_argument("--pack", choices=("auto", "yes", "no"), default="auto",
                   help="train a learning-rate grid as the replicas of one run (auto: on a GPU only)")
    c.set_defaults(func=cmd_select)
    v = sub.add_parser("verdict", help="table, figure and verdict of one claim")
    v.add_argument("claim"), v.add_argument("--profile", default="quick"), v.add_argument("--root", default=".")
    v.set_defaults(func=cmd_verdict)
    i = sub.add_parser("interpolate", help="Keskar's 1-D interpolation between two labels' runs of a claim")
    i.add_argument("claim"), i.add_argument("--profile", default="quick"), i.add_argument("--root", default=".")
    i.set_defaults(func=cmd_interpolate)
    f = sub.add_parser("fetch", help="download, verify and convert a dataset")
    f.add_argument("dataset")
    f.set_defaults(func=cmd_fetch)
    t = sub.add_parser("tune", help="short-horizon grid search of one claim label (bench/claims/tune.py)")
    t.add_argument("claim"), t.add_argument("label")
    t.add_argument("--profile", default="paper"), t.add_argument("--updates", type=_count, default=300)
    t.add_argument("--grid", nargs="+", required=True, metavar="NAME=V1,V2")
    t.add_argument("--jobs", type=_count, default=1), t.add_argument("--results", default="results")
    t.set_defaults(func=cmd_tune)
    b = sub.add_parser("perf", help="benchmarks: ratios measured side by side -> results/perf/")
    b.add_argument("names", nargs="*", help="default: all")
    b.add_argument("--device", default="auto"), b.add_argument("--out", default="results/perf")
    b.set_defaults(func=cmd_perf)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except ClaimbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0

