"""claimbench workflow: every claim x profile -> tuning jobs -> run jobs -> claim verdicts -> report.

    snakemake --cores all                              # quick profile (2-core CPU, minutes)
    snakemake --cores all --config profile=paper       # the papers' setups (GPU)
    snakemake -n                                       # show the plan
    snakemake --cores all --config claims=rws-beats-ws,iwae-beats-vae   # only these claims
    snakemake --report results/report.html             # HTML report: the verdict summary, then one
                                                       # category per claim (table and figure)

Every method label of a claim is first tuned with the same budget (checkpoint `tune`, one job per
distinct base configuration); its selection names the tuned evaluation run. Each run is one job
whose output directory is its run id (a hash of its resolved spec) and whose inputs are its
method's source files, so editing a method reruns exactly the runs that use it and
a second invocation does nothing. Writes are atomic; after a crash or kill, rerunning redoes only
what did not finish (profiles/default sets --rerun-incomplete).
"""

import os
import re
import sys
from typing import Callable, TypeVar

sys.path.insert(0, workflow.basedir)  # the checkout's bench/ and methods/, also from a copy of it

from bench.claims.catalog import check_profile, get_claim, load_claims, plan_all, run_sources  # noqa: E402
from bench.claims.tuning import read_selection  # noqa: E402
from bench.core.errors import ClaimbenchError  # noqa: E402
from bench.core.layout import (  # noqa: E402
    claim_paths,
    evaluated_marker,
    interpolation_paths,
    log_path,
    report_path,
    run_dir,
    summary_path,
    tuning_selection,
)
from bench.core.spec import RunSpec  # noqa: E402
from bench.engine.results import quarantine_corrupt_runs  # noqa: E402
from bench.report.markdown import summary_rst_path  # noqa: E402

T = TypeVar("T")


def checked(read: Callable[[], T], key: str | None = None, fix: str = "") -> T:
    """read(); bad input (the --config value `key`, a claim file) stops the workflow with one line
    naming the problem and the fix. sys.exit, since Snakemake prints a traceback with any exception
    a Snakefile raises, WorkflowError included."""
    try:
        return read()
    except (ClaimbenchError, ValueError) as exc:
        where = f"--config {key}={config.get(key)}: " if key else ""
        sys.exit(f"claimbench: {where}{exc}" + (f"; fix: {fix}" if fix else ""))


PROFILE = config.get("profile", "quick")
checked(lambda: check_profile(PROFILE), "profile", "profile=quick (a 2-core CPU), paper (a GPU) or smoke (a tiny quick)")
THREADS = checked(lambda: int(config.get("threads_per_run", 1)), "threads_per_run", "a whole number, e.g. threads_per_run=2")
GPU = checked(lambda: int(config.get("gpu_per_run", 0)), "gpu_per_run",
              "gpu_per_run=1 on a GPU host (with --resources gpu=N), 0 elsewhere")
CLAIMS = checked(load_claims)
if config.get("claims"):  # --config claims=id1,id2: only these claims (the SLURM check in CI); default: all
    IDS = [i.strip() for i in str(config["claims"]).split(",") if i.strip()]
    CLAIMS = checked(lambda: {i: get_claim(i, CLAIMS) for i in IDS}, "claims",
                     "claims=<id>,<id> with ids from that list (`python -m bench list` prints their statements)")
PLANS = checked(lambda: {plan.claim.id: plan for plan in plan_all(PROFILE, CLAIMS)})
BASES = {spec.run_id: spec for plan in PLANS.values() for spec in plan.runs.values()}  # labels before tuning
RESULTS = "results"
for corrupt in quarantine_corrupt_runs(run_dir(RESULTS, PROFILE, "")):  # rerun them, never trust them
    print(f"claimbench: {corrupt} cannot be read; renamed to run.json.corrupt, the run will rerun", file=sys.stderr)
SELECTION = str(tuning_selection(RESULTS, PROFILE, "{base_id}"))
EVALUATED = str(evaluated_marker(RESULTS, PROFILE, "{base_id}"))
RUN = str(run_dir(RESULTS, PROFILE, "{run_id}"))  # a run's folder, as a wildcard pattern
CLAIM = {key: str(path) for key, path in claim_paths(".", PROFILE, "{claim}").items()}
INTERPOLATION = {key: str(path) for key, path in interpolation_paths(".", PROFILE, "{claim}").items()}
INTERPOLATED = [c for c, plan in PLANS.items() if plan.claim.interpolation]  # claims whose figure interpolates two runs
REPORT, SUMMARY = str(report_path(".", PROFILE)), str(summary_path(".", PROFILE))
REPORT_RST = str(summary_rst_path(".", PROFILE))  # the verdict summary the HTML report opens on
PY = sys.executable

report: "bench/report/assets/workflow.rst"

wildcard_constraints:
    run_id="[0-9a-f]{12}",
    base_id="[0-9a-f]{12}",
    claim="|".join(re.escape(c) for c in PLANS),  # a claim id, never "<claim>--interpolation"


rule all:
    input:
        REPORT,
        SUMMARY,
        # every verdict and interpolation as well: Snakemake reruns a job whose output is missing only
        # when a job that needs it runs, so a claim whose verdict is missing (tuned, then killed during
        # its run) would otherwise be skipped while the report is newer than every verdict that exists
        [CLAIM["json"].format(claim=claim) for claim in PLANS],
        [INTERPOLATION["figure"].format(claim=claim) for claim in INTERPOLATED],
        # every label's tuning from the start and its evaluation run as soon as that tuning is done:
        # a claim's input function raises at its first label not yet tuned, so through it alone the
        # tuning jobs of one claim would run one after another and its evaluation runs would wait
        # for the slowest label's tuning (cores idle meanwhile)
        [EVALUATED.format(base_id=base_id) for base_id in BASES],


checkpoint tune:
    """Equal-budget tuning of one label's base configuration (bench/claims/tuning.py): the same
    grid size for every method, at the claim's budget, on a validation split carved from the
    training data, with a tuning seed; writes the selection and the tuned evaluation spec."""
    output:
        SELECTION,
    input:
        lambda w: [os.path.relpath(p, workflow.basedir) for p in run_sources(BASES[w.base_id])],
    params:
        spec=lambda w: BASES[w.base_id].to_json(),
    threads: THREADS
    resources:
        gpu=GPU,
    log:
        str(log_path(RESULTS, PROFILE, "tune-{base_id}")),
    shell:
        "{PY} -m bench select --spec {params.spec:q} --threads {threads} --results {RESULTS} 2> {log}"


EVAL_SPECS = {}  # run id -> tuned spec, from the selections written so far (read again on a miss)


def evaluation_spec(run_id):
    """The tuned spec of an evaluation run, from the selection that named it."""
    if run_id not in EVAL_SPECS:
        for base in BASES.values():
            selection = read_selection(RESULTS, base)
            if selection:
                EVAL_SPECS[selection["eval_run_id"]] = RunSpec.from_dict(selection["eval_spec"])
    if run_id not in EVAL_SPECS:
        raise ValueError(f"no tuning selection names run {run_id}")
    return EVAL_SPECS[run_id]


def evaluation_run(base_id):
    """The run.json of a label's tuned evaluation run, known once its tuning job has finished."""
    checkpoints.tune.get(base_id=base_id)  # the selection exists from here on
    return str(run_dir(RESULTS, PROFILE, read_selection(RESULTS, BASES[base_id])["eval_run_id"]) / "run.json")


def claim_runs(w, labels=None):
    """A claim's evaluation runs (of `labels`, default all)."""
    return [evaluation_run(base.run_id) for label, base in PLANS[w.claim].runs.items()
            if labels is None or label in labels]


rule evaluated:
    """A label's evaluation run, requested on its own as soon as its own tuning has finished (the
    claim needing it may still wait for another label's tuning); the marker is an empty file."""
    output:
        touch(EVALUATED),
    input:
        lambda w: evaluation_run(w.base_id),
    localrule: True


rule train:
    """One run: R seeds of one (dataset, model, method, hyper-parameters) in lock-step."""
    output:
        curve=f"{RUN}/curve.parquet",
        meta=f"{RUN}/run.json",
    input:
        # relative paths: moving or copying the checkout must not look like a changed input set
        lambda w: [os.path.relpath(p, workflow.basedir) for p in run_sources(evaluation_spec(w.run_id))],
    params:
        spec=lambda w: evaluation_spec(w.run_id).to_json(),
    threads: THREADS
    resources:
        gpu=GPU,
    log:
        str(log_path(RESULTS, PROFILE, "{run_id}")),
    shell:
        "{PY} -m bench run --spec {params.spec:q} --threads {threads} --results {RESULTS} 2> {log}"


rule claim:
    """A claim's table, figure and verdict from its runs."""
    output:
        verdict=CLAIM["json"],
        table=report(CLAIM["table"], category="{claim}", caption="bench/report/assets/claim.rst"),
        figure=report(CLAIM["figure"], category="{claim}", caption="bench/report/assets/claim.rst"),
    input:
        claim_runs,
    params:
        digest=lambda w: PLANS[w.claim].claim.digest(),
    shell:
        "{PY} -m bench verdict {wildcards.claim} --profile {PROFILE}"


rule interpolation:
    """Keskar's 1-D interpolation between the final parameters of the two labels named by a claim's
    figure (evaluation only): its table and figure, after those two runs."""
    output:
        table=INTERPOLATION["table"],
        figure=report(INTERPOLATION["figure"], category="{claim}", caption="bench/report/assets/claim.rst"),
    input:
        lambda w: claim_runs(w, PLANS[w.claim].claim.interpolation),
    params:
        digest=lambda w: PLANS[w.claim].claim.digest(),
    shell:
        "{PY} -m bench interpolate {wildcards.claim} --profile {PROFILE}"


rule report:
    """REPORT.md (quick and paper side by side), the profile's verdict summary (REPORT.rst, which
    the HTML report's landing text includes) and its summary table."""
    output:
        REPORT,
        SUMMARY,
        report(REPORT_RST, category="Verdicts", caption="bench/report/assets/summary.rst"),
    input:
        [str(claim_paths(".", PROFILE, claim)["json"]) for claim in PLANS],
        [str(interpolation_paths(".", PROFILE, claim)["figure"]) for claim in INTERPOLATED],
    shell:
        "{PY} -m bench report --profile {PROFILE}"
