"""A mutation score for the proxy: how many of cosmic-ray's mutants of ``src/freshtoken/proxy/``
the scenario catalogue kills, and how many the proxy's own tests kill.

    python benchmarks/mutation.py                       # 120 sampled mutants, about 30 minutes
    python benchmarks/mutation.py --sample 30 --markdown mutation.md --json mutation.json

cosmic-ray generates the mutants (every operator at every site of the request-path modules:
the ones a client's request passes through, from the proxy's handler to the token endpoint) and
runs a test command once per mutant; a command that fails (or runs past its timeout) kills it.
It was chosen over mutmut because its test command is any command, so the catalogue runs exactly
as users run it (``freshtoken scenarios run``), and because it mutates module-level code too
(mutmut 3 runs pytest only, and only mutates inside functions).

Two test commands, each on its own scratch copy of ``src/`` and ``tests/`` (cosmic-ray writes
each mutant into the files it tests, so never into the working tree):

* the catalogue: ``freshtoken scenarios run`` (the proxy subject, every scenario);
* the suite: the proxy's tests on the request path, ``pytest -x -n 2`` over ``SUITE`` below.

Mutants inside annotations are not run: with ``from __future__ import annotations`` no
annotation is evaluated, so they are equivalent by construction (counted apart). Of the rest,
``--sample`` are drawn with a fixed seed, so two runs of one tree test the same mutants.
Survivors are matched with ``benchmarks/mutation_triage.toml`` (module, operator, line text),
which says for each whether it is an equivalent mutant (and why), or what scenario or test now
kills it; the report lists every survivor with its triage and its diff.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PROXY = Path("src/freshtoken/proxy")
REQUEST_PATH = (
    "_proxy.py",
    "_forward.py",
    "_sse.py",
    "_matcher.py",
    "_guards.py",
    "_tokens.py",
    "_grants.py",
    "_endpoint.py",
)
"""The modules a client's request passes through: handler, forwarding, SSE peek, auth-failure
matching, caller guards, token sources, the refresh grant and the token endpoint client."""
SUITE = (
    "tests/proxy/test_proxy_forwarding.py",
    "tests/proxy/test_proxy_replay.py",
    "tests/proxy/test_proxy_matcher.py",
    "tests/proxy/test_proxy_tokens.py",
    "tests/proxy/test_proxy_token_endpoint.py",
    "tests/proxy/test_proxy_refresh_grace.py",
    "tests/proxy/test_proxy_hostile_upstream.py",
    "tests/proxy/test_proxy_raw_upstream.py",
    "tests/proxy/test_proxy_limits.py",
    "tests/proxy/test_proxy_downstream.py",
    "tests/proxy/test_proxy_fakes.py",
    "tests/proxy/test_proxy_store.py",
)
"""The proxy's tests of the request path (login, the SDK and config loading are left out)."""
TRIAGE = ROOT / "benchmarks" / "mutation_triage.toml"
SEED = 18
VERDICTS = {
    "equivalent": "equivalent mutant",
    "scenario": "killed by a scenario added for it",
    "test": "killed by a test added for it",
    "elsewhere": "killed by a test outside the request-path subset",
}


@dataclass
class Mutant:
    """One sampled mutant and what each test command made of it."""

    job_id: str
    module: str
    operator: str
    line: int
    text: str
    definition: str | None
    diff: str = ""
    catalogue: str = "pending"
    suite: str = "pending"

    @property
    def killed(self) -> bool:
        return "killed" in (self.catalogue, self.suite)


def _annotation_spans(path: Path) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    spans = []
    for node in ast.walk(tree):
        annotations: list[ast.expr | None] = []
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            args = node.args
            every = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
            annotations += [a.annotation for a in every if a is not None]
            annotations.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            annotations.append(node.annotation)
        for a in annotations:
            if a is not None and a.end_lineno is not None and a.end_col_offset is not None:
                spans.append(((a.lineno, a.col_offset), (a.end_lineno, a.end_col_offset)))
    return spans


def _in_annotation(
    spans: Iterable[tuple[tuple[int, int], tuple[int, int]]], pos: tuple[int, int]
) -> bool:
    return any(start <= pos < end for start, end in spans)


def _cosmic_ray(scratch: Path, *args: str, env: dict[str, str] | None = None) -> None:
    subprocess.run(
        [str(Path(sys.executable).parent / "cosmic-ray"), *args],
        cwd=scratch,
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )


def _config(modules: Sequence[str], command: str, timeout: float) -> str:
    paths = ", ".join(json.dumps(str(PROXY / m)) for m in modules)
    return (
        "[cosmic-ray]\n"
        f"module-path = [{paths}]\n"
        f"timeout = {timeout}\n"
        "excluded-modules = []\n"
        f"test-command = {json.dumps(command)}\n\n"
        '[cosmic-ray.distributor]\nname = "local"\n'
    )


def _scratch(base: Path, name: str) -> Path:
    scratch = base / name
    scratch.mkdir()
    for part in ("src", "tests"):
        shutil.copytree(ROOT / part, scratch / part, ignore=shutil.ignore_patterns("__pycache__"))
    for part in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / part, scratch / part)
    return scratch


def _select(
    db_path: Path, modules: Sequence[str], sample: int
) -> tuple[list[Mutant], Counter[str]]:
    """Skip the annotation mutants and all but ``sample`` of the rest; return the sampled ones
    and, per module, how many mutants were generated. A drawn mutant that does not compile (the
    ``*`` of a keyword-only signature read as a product) is stillborn: counted, and replaced by
    the next one drawn."""
    from cosmic_ray.mutating import mutate_code
    from cosmic_ray.plugins import get_operator
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    spans = {m: _annotation_spans(ROOT / PROXY / m) for m in modules}
    sources = {m: (ROOT / PROXY / m).read_text(encoding="utf-8") for m in modules}
    lines = {m: text.splitlines() for m, text in sources.items()}
    generated: Counter[str] = Counter()
    candidates: list[Mutant] = []
    specs = {}
    with use_db(str(db_path), WorkDB.Mode.open) as db:
        for item in db.pending_work_items:
            (spec,) = item.mutations
            module = Path(spec.module_path).name
            generated[module] += 1
            if _in_annotation(spans[module], tuple(spec.start_pos)):
                generated["(in annotations)"] += 1
                db.set_result(
                    item.job_id,
                    WorkResult(output="annotation", worker_outcome=WorkerOutcome.SKIPPED),
                )
                continue
            row = spec.start_pos[0]
            specs[item.job_id] = spec
            candidates.append(
                Mutant(
                    job_id=item.job_id,
                    module=module,
                    operator=spec.operator_name.removeprefix("core/"),
                    line=row,
                    text=lines[module][row - 1].strip(),
                    definition=spec.definition_name,
                )
            )
        candidates.sort(key=lambda m: (m.module, m.line, m.operator, m.job_id))
        random.Random(SEED).shuffle(candidates)
        chosen: list[Mutant] = []
        for m in candidates:
            if len(chosen) < sample:
                spec = specs[m.job_id]
                operator = get_operator(spec.operator_name)(**(spec.operator_args or {}))
                try:
                    code = mutate_code(sources[m.module], operator, spec.occurrence)
                    compile(code or "", m.module, "exec")
                except Exception:  # a syntax error, or an operator that cannot apply here
                    generated["(stillborn, drawn and replaced)"] += 1
                    db.set_result(
                        m.job_id,
                        WorkResult(output="stillborn", worker_outcome=WorkerOutcome.SKIPPED),
                    )
                    continue
                if code is not None:
                    chosen.append(m)
                    continue
            db.set_result(
                m.job_id, WorkResult(output="not sampled", worker_outcome=WorkerOutcome.SKIPPED)
            )
    chosen.sort(key=lambda m: (m.module, m.line, m.operator))
    return chosen, generated


def _outcomes(db_path: Path) -> dict[str, tuple[str, str]]:
    """job id → (outcome, diff) of every mutant that ran."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome

    out: dict[str, tuple[str, str]] = {}
    with use_db(str(db_path), WorkDB.Mode.open) as db:
        for item, result in db.completed_work_items:
            if result.worker_outcome == WorkerOutcome.SKIPPED:
                continue
            if result.worker_outcome != WorkerOutcome.NORMAL:
                outcome = "incompetent"
            elif result.test_outcome == TestOutcome.KILLED:
                outcome = "killed"
            elif result.test_outcome == TestOutcome.SURVIVED:
                outcome = "survived"
            else:
                outcome = "incompetent"
            if result.output and result.output.strip() == "timeout":
                outcome = "killed"  # a hang the command's timeout caught
            out[item.job_id] = (outcome, result.diff or "")
    return out


def _triage() -> list[dict[str, str]]:
    if not TRIAGE.exists():
        return []
    entries: list[dict[str, str]] = tomllib.loads(TRIAGE.read_text(encoding="utf-8")).get(
        "survivor", []
    )
    return entries


def _match(mutant: dict[str, Any], entries: Sequence[dict[str, str]]) -> dict[str, str]:
    for entry in entries:
        if (entry["module"], entry["operator"], entry["line"]) == (
            mutant["module"],
            mutant["operator"],
            mutant["text"],
        ):
            return entry
    return {}


def run(
    sample: int,
    modules: Sequence[str],
    deadline: float,
    keep: Path | None,
    suite: Sequence[str] = SUITE,
) -> dict[str, Any]:
    """Generate, sample and test the mutants; every figure of the report."""
    started = time.monotonic()
    base = Path(tempfile.mkdtemp(prefix="freshtoken-mutation-")) if keep is None else keep
    base.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    freshtoken = str(Path(python).parent / "freshtoken")
    commands = {
        "catalogue": (f"{freshtoken} scenarios run", 90.0),
        "suite": (
            f"{python} -m pytest -x -q -n 2 -p no:cacheprovider --timeout=60 " + " ".join(suite),
            240.0,
        ),
    }
    try:
        scratches = {name: _scratch(base, name) for name in commands}
        for name, scratch in scratches.items():
            command, timeout = commands[name]
            (scratch / "cosmic-ray.toml").write_text(_config(modules, command, timeout))
        # One mutant list for both commands: generated and sampled once, then copied.
        first = scratches["catalogue"]
        _cosmic_ray(first, "init", "cosmic-ray.toml", "session.sqlite")
        mutants, generated = _select(first / "session.sqlite", modules, sample)
        shutil.copy2(first / "session.sqlite", scratches["suite"] / "session.sqlite")
        _baseline(scratches, commands)
        processes = {}
        for name, scratch in scratches.items():
            env = {**os.environ, "PYTHONPATH": str(scratch / "src")}
            processes[name] = subprocess.Popen(
                [
                    str(Path(python).parent / "cosmic-ray"),
                    "exec",
                    "cosmic-ray.toml",
                    "session.sqlite",
                ],
                cwd=scratch,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        cut_short = False
        for name, process in processes.items():
            try:
                process.wait(timeout=max(1.0, deadline - (time.monotonic() - started)))
            except subprocess.TimeoutExpired:
                cut_short = True
                _stop(process, scratches[name])
        results = {
            name: _outcomes(scratch / "session.sqlite") for name, scratch in scratches.items()
        }
    finally:
        if keep is None:
            shutil.rmtree(base, ignore_errors=True)
    for m in mutants:
        m.catalogue, diff_a = results["catalogue"].get(m.job_id, ("pending", ""))
        m.suite, diff_b = results["suite"].get(m.job_id, ("pending", ""))
        m.diff = diff_a or diff_b
    return {
        "modules": list(modules),
        "generated": dict(generated),
        "sample": sample,
        "seed": SEED,
        "cut_short": cut_short,
        "minutes": round((time.monotonic() - started) / 60, 1),
        "mutants": [asdict(m) | {"killed": m.killed} for m in mutants],
    }


def _stop(process: subprocess.Popen[bytes], scratch: Path) -> None:
    """Stop a cosmic-ray run and the test command it started (in a session of its own, found by
    its working directory in the scratch copy)."""
    os.killpg(process.pid, signal.SIGTERM)
    process.wait()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if Path(os.readlink(proc / "cwd")).is_relative_to(scratch):
                os.killpg(os.getpgid(int(proc.name)), signal.SIGKILL)
        except OSError:
            continue


def _baseline(scratches: dict[str, Path], commands: dict[str, tuple[str, float]]) -> None:
    for name, scratch in scratches.items():
        command, timeout = commands[name]
        env = {**os.environ, "PYTHONPATH": str(scratch / "src")}
        done = subprocess.run(
            command.split(), cwd=scratch, env=env, capture_output=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).decode(errors="replace")[-2000:]
            raise SystemExit(f"the {name} fails without any mutant; fix that first:\n{tail}")


def _score(mutants: Sequence[dict[str, Any]], key: str) -> str:
    ran = [m for m in mutants if m[key] in ("killed", "survived")]
    killed = sum(m[key] == "killed" for m in ran)
    return f"{killed} of {len(ran)} ({100 * killed / len(ran):.0f} %)" if ran else "none ran"


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: the scores, the mutants by module, then every survivor with its
    triage (read from ``mutation_triage.toml`` now, so a report can be rendered again)."""
    entries = _triage()
    mutants = [m | {"triage": _match(m, entries)} for m in report["mutants"]]
    generated = report["generated"]
    total = sum(v for k, v in generated.items() if not k.startswith("("))
    annotations = generated.get("(in annotations)", 0)
    stillborn = generated.get("(stillborn, drawn and replaced)", 0)
    either = [m for m in mutants if m["killed"]]
    lines = [
        "# Mutation score of the proxy's request path",
        "",
        f"cosmic-ray over {', '.join(f'`{m}`' for m in report['modules'])} in "
        f"`src/freshtoken/proxy/`: {total} mutants generated, {annotations} of them inside "
        f"annotations (never evaluated: equivalent, not run); {len(mutants)} of the rest drawn "
        f"with seed {report['seed']} ({stillborn} more drawn did not compile and were replaced) "
        "and run against each test command "
        f"({report['minutes']} minutes{', cut short by the deadline' if report['cut_short'] else ''}).",
        "",
        "| test command | killed |",
        "|---|---|",
        f"| the catalogue (`freshtoken scenarios run`) | {_score(mutants, 'catalogue')} |",
        f"| the proxy's request-path tests (`pytest -x`) | {_score(mutants, 'suite')} |",
        f"| either | {len(either)} of {len(mutants)} |",
        "",
        "| module | generated | sampled | catalogue kills | suite kills | survivors |",
        "|---|---|---|---|---|---|",
    ]
    for module in report["modules"]:
        mine = [m for m in mutants if m["module"] == module]
        lines.append(
            f"| `{module}` | {generated.get(module, 0)} | {len(mine)} | "
            f"{sum(m['catalogue'] == 'killed' for m in mine)} | "
            f"{sum(m['suite'] == 'killed' for m in mine)} | "
            f"{sum(not m['killed'] for m in mine)} |"
        )
    verdicts = Counter(
        (m["triage"].get("verdict") or "untriaged") for m in mutants if not m["killed"]
    )
    lines += [
        "",
        "## Survivors",
        "",
        "Mutants neither command killed, with their triage "
        f"({', '.join(f'{n} {v}' for v, n in sorted(verdicts.items()))}):",
        "",
    ]
    lines += _survivor_lines([m for m in mutants if not m["killed"]])
    suite_only = [m for m in mutants if m["suite"] == "killed" and m["catalogue"] != "killed"]
    lines += [
        "",
        "## Killed by the suite, not by the catalogue",
        "",
        "What the catalogue misses and the proxy's tests catch (the catalogue judges behaviour a "
        "client sees; these are mostly error wording, limits and parsing details):",
        "",
    ]
    lines += _survivor_lines(suite_only, triaged=False)
    return "\n".join(lines) + "\n"


def _survivor_lines(mutants: Sequence[dict[str, Any]], *, triaged: bool = True) -> list[str]:
    out: list[str] = []
    for m in mutants:
        triage = m["triage"]
        verdict = VERDICTS.get(triage.get("verdict", ""), "untriaged")
        where = f"`{m['module']}:{m['line']}` ({m['definition'] or 'module'}), {m['operator']}"
        if not triaged and not triage:
            out.append(f"- {where}")
        else:
            out.append(
                f"- {where} — **{verdict}**" + (f": {triage['why']}" if triage.get("why") else "")
            )
        diff = [
            line
            for line in m["diff"].splitlines()
            if line[:1] in "+-" and not line.startswith(("+++", "---"))
        ]
        if diff:
            out.append("  ```diff")
            out += [f"  {line}" for line in diff[:6]]
            out.append("  ```")
    return out or ["(none)"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sample", type=int, default=120, help="mutants to run (default 120)")
    parser.add_argument(
        "--module",
        action="append",
        choices=REQUEST_PATH,
        help="only this request-path module (repeatable; default: all of them)",
    )
    parser.add_argument(
        "--deadline",
        type=float,
        default=90.0,
        help="minutes after which the runs stop and the report covers what finished",
    )
    parser.add_argument("--markdown", type=Path, help="write the report here")
    parser.add_argument("--json", type=Path, help="write every mutant and outcome here")
    parser.add_argument("--keep", type=Path, help="keep the scratch copies and sessions here")
    parser.add_argument(
        "--from-json",
        type=Path,
        metavar="FILE",
        help="run nothing: render the report of an earlier --json run with today's triage",
    )
    parser.add_argument(
        "--suite",
        action="append",
        metavar="TEST_FILE",
        help="run these test files as the suite (repeatable; default: the request-path tests)",
    )
    args = parser.parse_args(argv)
    if args.from_json:
        text = markdown(json.loads(args.from_json.read_text()))
        if args.markdown:
            args.markdown.write_text(text)
        print(text)
        return 0
    report = run(
        args.sample,
        args.module or REQUEST_PATH,
        args.deadline * 60,
        args.keep,
        args.suite or SUITE,
    )
    text = markdown(report)
    if args.markdown:
        args.markdown.write_text(text)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
