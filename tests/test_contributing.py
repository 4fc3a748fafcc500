"""README 'Contributing', followed literally in a temporary copy of the checkout.

Each recipe's code blocks are read from README.md, so that this test follows the README when it
changes: a fenced block whose first line is ``# file: PATH`` is written to PATH in the copy, one whose
first line is ``# append to: PATH`` is appended to PATH. The commands the README names
(``python -m bench new-method ...``, ``python -m bench plan --claims ...``) are run as written (with
``--profile smoke --json`` added to the plan, to get the specs of the tiny smoke profile), in the copy
(``cwd`` and ``PYTHONPATH`` the copy, so that its code is imported, not the checkout's). Instead of
``snakemake --cores all``, the claim goes through the README's two stages "On a machine without
Snakemake", read from its code block and run as written at the smoke profile for the recipe's claim:
each base spec of ``plan --json`` through ``python -m bench select --spec`` (the equal-budget tuning,
Snakemake's tune jobs), side by side; then each tuned spec of ``plan --stage eval --json`` through
``python -m bench run --spec`` (its train jobs); then ``python -m bench verdict`` and ``python -m bench
report``. The one deviation from the README is in the dataset recipe: see ``dataset_project``.

One copy per recipe (module fixtures); the smoke profile keeps every run to seconds (tuning adds
CONFIGS['smoke'] tiny runs, maybe one more, per label, in its `select` process), and most of the
file's time is the ~4 CPU seconds each `python -m bench` process takes to import the harness.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, copy_project

PROJECT_FILES = ("bench", "methods", "Snakefile", "pyproject.toml", "README.md", "profiles")
VERDICTS = ("reproduced", "not reproduced", "inconclusive")


# --------------------------------------------------------------------------- the README, parsed
def _section(text: str, heading: str) -> str:
    """The text under `heading` (a markdown heading line) up to the next heading of its level or above."""
    level = len(heading) - len(heading.lstrip("#"))
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == heading), None)
    assert start is not None, f"README.md has no heading {heading!r}"
    end, fenced = len(lines), False
    for j in range(start + 1, len(lines)):
        fenced ^= lines[j].startswith("```")  # a `# file:` line inside a code block is no heading
        if not fenced and re.match(rf"#{{1,{level}}} ", lines[j]):
            end = j
            break
    return "\n".join(lines[start + 1:end]) + "\n"


def contributing() -> str:
    return _section((ROOT / "README.md").read_text(), "## Contributing: add a method, a workload, a dataset, a claim")


def recipe(name: str) -> str:
    """The subsection '### Add a <name>' of the contributing section."""
    return _section(contributing(), f"### Add a {name}")


def file_blocks(text: str) -> list[tuple[str, str, str]]:
    """(mode, path, block) for each fenced block opening with `# file: PATH` or `# append to: PATH`."""
    out = []
    for block in re.findall(r"^```\w*\n(.*?)^```", text, re.MULTILINE | re.DOTALL):
        first = block.splitlines()[0]
        m = re.fullmatch(r"#\s*(file|append to):\s*(\S+)\s*", first)
        if m:
            out.append((m.group(1), m.group(2), block))
    return out


def _prose(text: str) -> str:
    """The text without its fenced blocks, lines joined (an inline span may wrap)."""
    return re.sub(r"^```.*?^```[^\n]*\n", "", text, flags=re.MULTILINE | re.DOTALL).replace("\n", " ")


def inline_commands(text: str) -> list[str]:
    """Inline code spans that are `python -m bench ...` commands, in order."""
    return [c for c in re.findall(r"`([^`]+)`", _prose(text)) if c.startswith("python -m bench ")]


def apply_blocks(workdir: Path, blocks: list[tuple[str, str, str]]) -> list[Path]:
    """Do what each block's first line says: write the block to PATH, or append it to PATH."""
    written = []
    for mode, rel, block in blocks:
        path = workdir / rel
        if mode == "file":
            assert not path.exists(), f"README's `# file: {rel}` would overwrite an existing file"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(block)
        else:
            assert path.is_file(), f"README's `# append to: {rel}`: no such file in the checkout"
            with open(path, "a") as f:
                f.write("\n" + block)
        written.append(path)
    return written


# --------------------------------------------------------------------------- the copy and its commands
def copy_project_files(dest: Path) -> Path:
    return copy_project(dest, PROJECT_FILES)


def env_for(workdir: Path, data: list[Path] = ()) -> dict[str, str]:
    """The copy's code first on the path; `data` then $CLAIMBENCH_DATA (made absolute) to search."""
    entries = [str(Path(d).resolve()) for d in data]
    entries += [str(Path(e).resolve()) for e in os.environ.get("CLAIMBENCH_DATA", "").split(os.pathsep) if e]
    return {**os.environ, "PYTHONPATH": str(workdir), "CLAIMBENCH_DATA": os.pathsep.join(entries),
            "MPLBACKEND": "Agg"}


def _argv(cmd: str | list[str]) -> list[str]:
    argv = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
    if argv[0] == "python":
        argv[0] = sys.executable
    return argv


def _check(argv: list[str], out: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    if out.returncode != 0:
        raise AssertionError(f"`{shlex.join(argv)}` exited {out.returncode}:\n"
                             f"{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out


def start(workdir: Path, cmd: str | list[str], env: dict[str, str] | None = None):
    """Start one command in the copy, as a user would run it there (`python` is this interpreter)."""
    argv = _argv(cmd)
    return argv, subprocess.Popen(argv, cwd=workdir, env=env or env_for(workdir), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)


def finish(started, check: bool = True) -> subprocess.CompletedProcess:
    argv, proc = started
    try:
        stdout, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    out = subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)
    return _check(argv, out) if check else out


def sh(workdir: Path, cmd: str | list[str], env: dict[str, str] | None = None, check: bool = True):
    return finish(start(workdir, cmd, env), check)


def plan_specs(workdir: Path, plan_cmd: str) -> list[dict]:
    """The README's plan command, at the smoke profile and as JSON: one (base) RunSpec per line."""
    out = sh(workdir, shlex.split(plan_cmd) + ["--profile", "smoke", "--json"]).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def without_snakemake() -> str:
    """The code block of the README's paragraph 'On a machine without Snakemake'."""
    text = (ROOT / "README.md").read_text()
    at = text.find("On a machine without Snakemake")
    assert at >= 0, "README.md has no paragraph 'On a machine without Snakemake'"
    block = re.search(r"^```\w*\n(.*?)^```", text[at:], re.MULTILINE | re.DOTALL)
    assert block, "README's 'On a machine without Snakemake' has no code block"
    return block.group(1)


def two_stages(block: str) -> tuple[list[tuple[list[str], list[str]]], list[list[str]]]:
    """The block's `PLAN | xargs ... CMD` pipelines as (plan argv, the command each spec line is
    appended to), in order, and the commands after them (split at `&&`)."""
    pipelines, after = [], []
    for line in re.sub(r"\|\s*\n\s*", "| ", block).splitlines():
        if "|" in line:
            plan, xargs = (shlex.split(part) for part in line.split("|"))
            assert xargs[0] == "xargs" and "python" in xargs, line
            pipelines.append((plan, xargs[xargs.index("python"):]))
        elif line.strip():
            after += [shlex.split(cmd) for cmd in line.split("&&")]
    return pipelines, after


def for_claim(argv: list[str], readme_claim: str, claim_id: str) -> list[str]:
    """A README command for its example claim and profile, made one for `claim_id` at the smoke profile."""
    argv = [claim_id if a == readme_claim else a for a in argv]
    return [("smoke" if i and argv[i - 1] == "--profile" else a) for i, a in enumerate(argv)]


def run_claim(workdir: Path, claim_id: str) -> str:
    """The README's two stages without Snakemake for `claim_id` at the smoke profile: tune every base
    spec the plan lists (`select`, side by side, each on one thread), run every tuned spec the plan's
    eval stage lists (`run`, side by side), then the verdict and the report; return REPORT.md."""
    pipelines, after = two_stages(without_snakemake())
    readme_claim = pipelines[0][0][pipelines[0][0].index("--claims") + 1]
    for plan, command in pipelines:
        specs = [line for line in sh(workdir, for_claim(plan, readme_claim, claim_id)).stdout.splitlines() if line.strip()]
        assert specs, f"`{shlex.join(plan)}` listed no spec for {claim_id}"
        for job in [start(workdir, command + [spec]) for spec in specs]:
            finish(job)
    for command in after:
        sh(workdir, for_claim(command, readme_claim, claim_id))
    return (workdir / "results/smoke/REPORT.md").read_text()


def plan_lines(workdir: Path, plan_cmd: str) -> dict[str, str]:
    """The README's (human-readable) plan command at the smoke profile: base run id -> its line."""
    out = sh(workdir, shlex.split(plan_cmd) + ["--profile", "smoke"]).stdout
    return {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}


def check_tuned(workdir: Path, plan_cmd: str, bases: list[dict]) -> dict[str, dict]:
    """Every base run was tuned (its selection names a tuned run that finished, whose spec is the
    base with only the tuned knobs changed), and the README's plan command shows base -> tuned run."""
    chosen, lines = selections(workdir), plan_lines(workdir, plan_cmd)
    out = {}
    for base in bases:
        base_id = hashlib.sha256(json.dumps(base, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:12]
        selection = chosen[base_id]
        assert len(selection["points"]) >= selection["configs"], selection
        tuned = selection["eval_spec"]
        assert {k: v for k, v in tuned.items() if k != "hparams"} == {k: v for k, v in base.items() if k != "hparams"}
        assert tuned["hparams"] == {**base["hparams"], **selection["chosen"]}
        assert (workdir / "results/smoke/runs" / selection["eval_run_id"] / "run.json").is_file()
        assert f"-> {selection['eval_run_id']} " in lines[base_id], lines[base_id]
        out[base_id] = selection
    return out


def selections(workdir: Path) -> dict[str, dict]:
    """base run id -> its tuning selection, from results/smoke/tuning/."""
    return {p.stem: json.loads(p.read_text()) for p in (workdir / "results/smoke/tuning").glob("*.json")}


def report_row(report: str, claim_id: str) -> str:
    rows = [line for line in report.splitlines() if line.startswith(f"| [{claim_id}]")]
    assert rows, f"REPORT.md has no summary row for {claim_id}"
    return rows[0]


def report_section(report: str, claim_id: str) -> str:
    start = report.index(f"## {claim_id}")
    nxt = report.find("\n## ", start + 1)
    return report[start:] if nxt < 0 else report[start:nxt]


# --------------------------------------------------------------------------- the README's recipes exist
def test_readme_recipes_are_where_this_test_reads_them():
    """Every recipe this file follows is in the README in the form it parses (a clear failure first,
    rather than a confusing one later, when the README changes)."""
    assert [m for m, _, _ in file_blocks(recipe("workload"))] == ["file"] * 3
    assert [(m, p) for m, p, _ in file_blocks(recipe("dataset"))] == [("append to", "bench/engine/data.py")]
    assert [m for m, _, _ in file_blocks(recipe("claim"))] == ["file"]
    assert any(c.startswith("python -m bench new-method ") for c in inline_commands(recipe("method")))
    assert any(c.startswith("python -m bench plan --claims ") for c in inline_commands(recipe("method")))
    assert any(c.startswith("python -m bench plan --claims ") for c in inline_commands(recipe("claim")))
    assert "python -m bench list" in inline_commands(recipe("dataset"))
    pipelines, after = two_stages(without_snakemake())
    assert [cmd[:4] for _, cmd in pipelines] == [["python", "-m", "bench", "select"], ["python", "-m", "bench", "run"]]
    assert [plan[:4] for plan, _ in pipelines] == [["python", "-m", "bench", "plan"]] * 2
    assert [("--stage" in plan, "--json" in plan) for plan, _ in pipelines] == [(False, True), (True, True)]
    assert pipelines[1][0][pipelines[1][0].index("--stage") + 1] == "eval"
    assert all(cmd[-1] == "--spec" for _, cmd in pipelines)
    assert [cmd[:4] for cmd in after] == [["python", "-m", "bench", "verdict"], ["python", "-m", "bench", "report"]]


# --------------------------------------------------------------------------- add a method
def _method_line(text: str) -> tuple[str, str, str, str]:
    """From 'under `CLAIM` in `FILE`: `LINE`': (claim id, yaml file, the line, the method's name)."""
    m = re.search(r"under `([\w-]+)` in `(bench/claims/[\w-]+\.yaml)`:\s*`( *[^`]+: \{method: (\w+)\})`",
                  _prose(text))
    assert m, "README 'Add a method' names no claim line `LABEL: {method: NAME}` to add"
    return m.group(1), m.group(2), m.group(3), m.group(4)


def add_under_methods(yaml_text: str, claim_id: str, line: str) -> str:
    """Add `line` as the last entry under `methods:` of claim `claim_id`, indented like the entries
    already there (as the README says; a line the README writes with its own indentation keeps it)."""
    lines = yaml_text.splitlines(keepends=True)
    start = next(i for i, s in enumerate(lines) if re.match(rf"- id: {re.escape(claim_id)}\s*$", s))
    head = next(i for i in range(start + 1, len(lines)) if re.match(r"\s+methods:\s*$", lines[i]))
    indent = lambda s: len(s) - len(s.lstrip())
    end = head + 1
    while end < len(lines) and (not lines[end].strip() or indent(lines[end]) > indent(lines[head])):
        end += 1
    entries = [s for s in lines[head + 1:end] if s.strip()]
    assert entries, f"claim {claim_id!r} lists no methods to indent the new line like"
    if line == line.lstrip():
        line = " " * indent(entries[0]) + line
    return "".join(lines[:end] + [line.rstrip() + "\n"] + lines[end:])


@pytest.fixture(scope="module")
def method_project(tmp_path_factory, data_dir):
    """A copy in which the 'Add a method' steps were followed: scaffold, name it in a claim."""
    text = recipe("method")
    workdir = copy_project_files(tmp_path_factory.mktemp("method") / "project")
    claim_id, claim_file, line, name = _method_line(text)
    new_method = next(c for c in inline_commands(text) if c.startswith("python -m bench new-method "))
    assert new_method == f"python -m bench new-method {name}"
    out = sh(workdir, new_method)
    target = workdir / "methods" / f"{name}.py"
    assert target.is_file() and str(target) in out.stdout, out.stdout  # written in the copy, not the checkout
    path = workdir / claim_file
    path.write_text(add_under_methods(path.read_text(), claim_id, line))
    plan_cmd = next(c for c in inline_commands(text) if c.startswith("python -m bench plan --claims "))
    return workdir, claim_id, line.split(":")[0].strip(), name, plan_cmd


def test_add_a_method(method_project):
    """The plan lists the new method's base run; tuned and run with the claim's others, the plan
    shows its tuned run and the report shows it, with its tuning."""
    workdir, claim_id, label, name, plan_cmd = method_project
    specs = plan_specs(workdir, plan_cmd)
    assert [s for s in specs if s["method"] == name], f"plan has no run of {name}: {specs}"
    assert len(specs) >= 2  # the claim's other labels too
    assert all("(not tuned yet)" in line for line in plan_lines(workdir, plan_cmd).values())
    report = run_claim(workdir, claim_id)
    tuned = check_tuned(workdir, plan_cmd, specs)
    assert {s["method"] for s in tuned.values()} >= {name}
    section = report_section(report, claim_id)
    assert f"| {label}" in section
    assert re.search(rf"Tuning \(equal budget.*{re.escape(label)}: lr=\S+ \(best of \d+ configurations", section), section
    assert any(v in report_row(report, claim_id) for v in VERDICTS), report_row(report, claim_id)


# --------------------------------------------------------------------------- add a workload + a claim
@pytest.fixture(scope="module")
def workload_project(tmp_path_factory, data_dir):
    """A copy with the 'Add a workload' files and the 'Add a claim' claim that uses its family."""
    workdir = copy_project_files(tmp_path_factory.mktemp("workload") / "project")
    apply_blocks(workdir, file_blocks(recipe("workload")) + file_blocks(recipe("claim")))
    return workdir


def test_add_a_workload_and_a_claim(workload_project):
    """The claim's plan lists both labels' runs; they run through the new workload (its metric `ll`
    is in the curves) and the report has the claim's row with a computed verdict."""
    workdir = workload_project
    text = recipe("claim")
    (_, _, block), = file_blocks(text)
    claim_id = re.search(r"^- id: ([\w-]+)", block, re.MULTILINE).group(1)
    plan_cmd = next(c for c in inline_commands(text) if c.startswith("python -m bench plan --claims "))
    assert claim_id in plan_cmd
    specs = plan_specs(workdir, plan_cmd)
    assert len(specs) == 2 and {s["method"] for s in specs} == {"bernoulli_mle"}, specs
    assert {s["model"]["family"] for s in specs} == {"factorial_bernoulli"}
    report = run_claim(workdir, claim_id)
    tuned = check_tuned(workdir, plan_cmd, specs)
    assert all(s["metric"] == "ll" and s["knobs"] == ["lr"] for s in tuned.values())  # the workload's tuning metric
    row = report_row(report, claim_id)
    assert any(v in row for v in VERDICTS) and "not run" not in row, row
    runs = [*(workdir / "results/smoke/runs").iterdir(), *(workdir / "results/smoke/tuning/runs").iterdir()]
    assert len(runs) >= 2 + 2 * 4
    for run in runs:
        curve = pd.read_parquet(run / "curve.parquet")
        assert "ll" in set(curve["metric"]), run
        assert np.isfinite(curve.loc[curve["metric"] == "ll", "value"]).all()


def test_new_workload_modules_keep_the_layers(workload_project):
    """`lint-imports` still passes with the recipe's model, workload and method files."""
    lint = Path(sys.executable).with_name("lint-imports")
    sh(workload_project, [str(lint), "--config", "pyproject.toml"])


# --------------------------------------------------------------------------- add a dataset
@pytest.fixture(scope="module")
def dataset_project(tmp_path_factory):
    """A copy with the README's dataset block appended and a valid npz of the declared shapes in a
    data folder, whose sha256 replaces the block's placeholder. Then, side by side: `python -m bench
    list` and `python -m bench fetch NAME` with that folder on $CLAIMBENCH_DATA, and `fetch` with a
    corrupted copy of the npz (one byte appended) in another folder."""
    base = tmp_path_factory.mktemp("dataset")
    workdir = copy_project_files(base / "project")
    blocks = file_blocks(recipe("dataset"))
    (_, _, block), = blocks
    name = re.search(r'DATASETS\["(\w+)"\]', block).group(1)
    shapes = ast.literal_eval(re.search(r"shapes=(\{[^}]*\})", block).group(1))
    rng = np.random.default_rng(0)
    npz = base / "data" / f"{name}.npz"
    npz.parent.mkdir()
    np.savez_compressed(npz, **{f"x_{s}": (rng.random(shape) < 0.3).astype(np.uint8) for s, shape in shapes.items()})
    # The one deviation from the README: its block carries a placeholder for the npz's sha256, which a
    # contributor fills in with the real file's hash; no network here, so the file is a synthetic
    # stand-in of the declared shapes and the placeholder becomes its hash.
    placeholder = re.search(r'npz_sha256="(<[^"]*>)"', block).group(1)
    digest = hashlib.sha256(npz.read_bytes()).hexdigest()
    apply_blocks(workdir, [(m, p, b.replace(placeholder, digest)) for m, p, b in blocks])
    bad = base / "corrupt" / npz.name
    bad.parent.mkdir()
    bad.write_bytes(npz.read_bytes() + b"\0")
    listing = next(c for c in inline_commands(recipe("dataset")) if c == "python -m bench list")
    jobs = {"list": start(workdir, listing, env_for(workdir, [npz.parent])),
            "fetch": start(workdir, f"python -m bench fetch {name}", env_for(workdir, [npz.parent])),
            "corrupt": start(workdir, f"python -m bench fetch {name}", env_for(workdir, [bad.parent]))}
    out = {key: finish(job, check=key != "corrupt") for key, job in jobs.items()}
    return name, npz.resolve(), bad.resolve(), out


def test_add_a_dataset(dataset_project):
    """`python -m bench list` says where the new dataset was found; it loads, verified."""
    name, npz, _, out = dataset_project
    line = next((s for s in out["list"].stdout.splitlines() if s.strip().startswith(name + " ")), None)
    assert line is not None, out["list"].stdout
    assert line.endswith(f"-- {npz}"), line
    assert f"{name}: {npz}" in out["fetch"].stdout


def test_a_dataset_with_a_wrong_checksum_is_a_clear_error(dataset_project):
    """A file whose sha256 is not the registered one is refused: exit 2, the file named, no traceback."""
    name, _, bad, out = dataset_project
    err = out["corrupt"].stderr
    assert out["corrupt"].returncode == 2, out["corrupt"].stdout + err
    assert "Traceback" not in err
    assert err.startswith(f"error: {bad}: sha256 ") and repr(name) in err, err
