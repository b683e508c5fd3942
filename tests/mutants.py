"""Mutation check: named, realistic faults injected into the library must make its tests fail.

Run ``python tests/mutants.py`` (``.ci/run`` does). Each mutant replaces one exact source
snippet (it must occur exactly once) in a temporary copy of the repository and runs a small,
targeted selection of existing tests there, in a subprocess (``HYPOTHESIS_PROFILE=mutants``:
derandomized, 40 examples, no shrinking). A mutant is *killed* when at least one of its tests
fails. The unmutated copy runs every selected test first: if that baseline is red the check
aborts (a test that fails anyway kills nothing).

Prints one row per mutant (name, target, killing tests, killed?) and, last, exactly
``mutants killed: K/N``. Exit status 1 if a mutant survives that is not in :data:`ALLOWED`
(each entry with the reason it may survive), 2 if the baseline is red.

Options: ``-k SUBSTRING`` runs only mutants whose name contains it; ``-j N`` parallel
processes (default 2, the CI machine's cores).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Wall-clock limit of one mutant's pytest run (a hang counts as killed, marked "timeout").
TIMEOUT_S = 90


@dataclass(frozen=True)
class Mutant:
    """One injected fault: replace ``old`` by ``new`` in ``path``; ``tests`` must catch it."""

    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]
    why: str


T_CHECKS = "tests/test_checks.py"
T_METRICS = "tests/test_metrics.py"
T_SIM = "tests/sim/test_simulator.py"
T_FF = "tests/sim/test_fast_forward.py"
T_KV = "tests/sim/test_kv.py"
T_CONF = "tests/schedulers/test_conformance.py"
T_GP = "tests/solvers/test_goodput_milp.py"
T_HV = "tests/solvers/test_highs_verified.py"
T_MARG = "tests/test_checks_margins.py"

MUTANTS: tuple[Mutant, ...] = (
    # -- simulator ---------------------------------------------------------------------------
    Mutant("sim-decode-context-off-by-one", "slo_opt/sim/executor.py",
           "ctx_dec = int(_sum(comp)) + m", "ctx_dec = int(_sum(comp))",
           (f"{T_CONF}::test_conformance_under_load",),
           "a pure decode step forgets the token it is computing in the context length "
           "(step times of context-dependent engines too short)"),
    Mutant("sim-kv-blocks-floor", "slo_opt/sim/executor.py",
           "    new_held = -(-newc // b)\n    held = kv.held[rids]",
           "    new_held = newc // b\n    held = kv.held[rids]",
           (f"{T_CONF}::test_conformance_under_load",),
           "KV block rounding error: blocks held = floor(tokens / block) instead of ceil"),
    Mutant("sim-admits-one-token-too-many", "slo_opt/sim/kv.py",
           "return self.blocks(peak_tokens) <= self.capacity_blocks",
           "return self.blocks(peak_tokens - 1) <= self.capacity_blocks",
           (f"{T_MARG}::test_admission_at_the_capacity_boundary",),
           "KV admission off by one token: a request whose peak needs one block more than the "
           "cache is admitted"),
    Mutant("sim-rejects-exact-fit", "slo_opt/sim/kv.py",
           "return self.blocks(peak_tokens) <= self.capacity_blocks",
           "return self.blocks(peak_tokens) < self.capacity_blocks",
           (f"{T_MARG}::test_admission_at_the_capacity_boundary",),
           "KV admission too strict: a request that exactly fills the cache is rejected"),
    Mutant("sim-free-swaps", "slo_opt/sim/kv.py",
           "return tokens * self.kv_bytes_per_token / self.host_bandwidth_bytes_per_s",
           "return 0.0 * tokens",
           (f"{T_SIM}::test_swap_out_and_in_costs_transfer_time",),
           "swap-out/in transfers cost no time"),
    Mutant("sim-preempt-keeps-computed", "slo_opt/sim/executor.py",
           "        kv.release_one(rid)\n        st.computed[rid] = 0\n",
           "        kv.release_one(rid)\n",
           (f"{T_SIM}::test_vllm_recompute_preemption_known_answer", f"{T_CONF}::test_conformance_under_load"),
           "wrong preemption release: recompute preemption frees the blocks but keeps the "
           "computed tokens (nothing is recomputed)"),
    Mutant("sim-preempt-leaks-blocks", "slo_opt/sim/executor.py",
           "        kv.release_one(rid)\n        st.computed[rid] = 0\n",
           "        st.computed[rid] = 0\n",
           (f"{T_SIM}::test_vllm_recompute_preemption_known_answer", f"{T_KV}::test_hold_and_release_conserve_blocks"),
           "wrong preemption release: a recompute-preempted request's blocks never return to "
           "the pool"),
    Mutant("sim-step-time-factor", "slo_opt/sim/executor.py",
           "    end = start + dt + swap_s", "    end = start + 1.05 * dt + swap_s",
           (f"{T_SIM}::test_vllm_known_answer", f"{T_CONF}::test_conformance_slot_engine"),
           "a step lasts 5 % longer than the engine model says"),
    Mutant("sim-first-token-one-step-late", "slo_opt/sim/executor.py",
           "st.first_token_step[fr] = last_step", "st.first_token_step[fr] = last_step + 1",
           (f"{T_SIM}::test_vllm_known_answer",),
           "off-by-one in token accounting: the first token is recorded one step late"),
    Mutant("ff-horizon-ignores-arrival", "slo_opt/sim/fastforward.py",
           "limit = min(st.next_arrival_s() - ARRIVAL_EPS_S, repeat_until_s)",
           "limit = repeat_until_s",
           (f"{T_FF}::test_arrival_in_the_middle_of_a_decode_run",
            f"{T_FF}::test_fast_forward_equals_stepping_linear_engine"),
           "wrong fast-forward horizon: a decode run continues past the next arrival"),
    Mutant("ff-runs-past-first-completion", "slo_opt/sim/fastforward.py",
           "k = int(_min(st.O[rids] - gen))  # up to", "k = int(_min(st.O[rids] - gen)) + 1  # up to",
           (f"{T_SIM}::test_fast_forward_equals_stepping_on_long_decodes",),
           "wrong fast-forward horizon: the run includes one step past the first completion"),
    Mutant("ff-ignores-kv", "slo_opt/sim/fastforward.py",
           "    k = st.kv.decode_steps_fitting(comp, k)\n", "",
           (f"{T_FF}::test_preemption_and_requeue_under_kv_pressure_all_schedulers",),
           "fast-forward ignores KV block acquisitions during a decode run"),
    Mutant("kv-fitting-off-by-one", "slo_opt/sim/kv.py",
           "k = min(k, int(np.partition(acq, f)[f]) - 1)", "k = min(k, int(np.partition(acq, f)[f]))",
           (f"{T_KV}::test_decode_steps_fitting_equals_stepping",),
           "decode_steps_fitting lets the step that needs the first unavailable block run"),
    Mutant("kv-run-release-one-step-early", "slo_opt/sim/kv.py",
           "used = np.cumsum(acq - rel)", "used = np.cumsum(acq)",
           (f"{T_KV}::test_decode_run_steps_fitting_equals_stepping",),
           "a shrinking decode run never returns a finishing request's blocks to the pool"),
    # -- schedulers --------------------------------------------------------------------------
    Mutant("vllm-budget-plus-one", "slo_opt/schedulers/vllm.py",
           "        n = min(view.next_tokens(r), budget)\n",
           "        n = min(view.next_tokens(r), budget + 1)\n",
           (f"{T_CONF}::test_conformance_under_load",),
           "vLLM gives a running request one token more than the remaining step budget"),
    Mutant("vllm-preempts-oldest", "slo_opt/schedulers/vllm.py",
           "            victim = running.pop()\n", "            victim = running.pop(0)\n",
           (f"{T_SIM}::test_vllm_recompute_preemption_known_answer", "tests/schedulers/test_vllm_semantics.py"),
           "vLLM evicts the oldest running request instead of the newest"),
    Mutant("edf-latest-deadline-first", "slo_opt/schedulers/edf.py",
           "key=lambda r: (float(dl[r]), r))", "key=lambda r: (-float(dl[r]), r))",
           ("tests/schedulers/test_edf.py::test_edf_serves_by_ttft_deadline",),
           "EDF sorts by latest deadline"),
    Mutant("sjf-longest-first", "slo_opt/schedulers/sjf.py",
           "return sorted(ready, key=lambda r: (key[r], r))",
           "return sorted(ready, key=lambda r: (-key[r], r))",
           ("tests/schedulers/test_sjf.py::test_dynamic_batch_takes_the_shortest",
            "tests/schedulers/test_sjf.py::test_ssjf_with_oracle_equals_sjf"),
           "SJF serves the longest predicted job first"),
    # -- checker (too lenient or too strict) -------------------------------------------------
    Mutant("checker-kv-slack-block", "slo_opt/checks.py",
           "over = np.flatnonzero(kv > cap_blocks)", "over = np.flatnonzero(kv > cap_blocks + 1)",
           (f"{T_MARG}::test_kv_overflow_by_one_block_of_a_partial_block",),
           "the checker tolerates one block of KV overflow"),
    Mutant("checker-kv-blocks-floor", "slo_opt/checks.py",
           "                new_held = -(-new_comp // b)\n", "                new_held = new_comp // b\n",
           (f"{T_MARG}::test_kv_overflow_by_one_block_of_a_partial_block",),
           "KV block rounding error in the checker: floor instead of ceil"),
    Mutant("checker-token-budget-strict", "slo_opt/checks.py",
           "over = np.flatnonzero(tok_per_step > engine.max_batch_tokens)",
           "over = np.flatnonzero(tok_per_step >= engine.max_batch_tokens)",
           (f"{T_CONF}::test_conformance_under_load",),
           "too strict: a step that exactly fills the token budget is flagged"),
    Mutant("checker-token-budget-lenient", "slo_opt/checks.py",
           "over = np.flatnonzero(tok_per_step > engine.max_batch_tokens)",
           "over = np.flatnonzero(tok_per_step > engine.max_batch_tokens + 1)",
           (f"{T_MARG}::test_token_budget_overflow_by_one_token",),
           "too lenient: one token over the budget passes"),
    Mutant("checker-step-time-loose", "slo_opt/checks.py",
           "math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12)",
           "math.isclose(got, want, rel_tol=0.2, abs_tol=1e-12)",
           (f"{T_MARG}::test_step_one_ppm_too_long",),
           "step durations accepted within 20 %"),
    Mutant("checker-arrival-slack", "slo_opt/checks.py",
           "early = st[s_exp] < workload.arrival_s[r_exp] - _TIME_TOL",
           "early = st[s_exp] < workload.arrival_s[r_exp] - 0.5",
           (f"{T_MARG}::test_computing_one_millisecond_before_arrival",),
           "computing up to 0.5 s before a request arrives passes"),
    Mutant("checker-skips-first-token-record", "slo_opt/checks.py",
           "        if first != fts[rid]:\n", "        if first != fts[rid] and False:\n",
           (f"{T_CHECKS}::test_detects_missing_first_token_record",),
           "the recorded first-token step is not re-derived"),
    Mutant("checker-token-overshoot", "slo_opt/checks.py",
           "            if tok > need:\n", "            if tok > need + 1:\n",
           (f"{T_MARG}::test_one_token_more_than_needed",),
           "off-by-one in the checker's token accounting: one token beyond the next output "
           "token passes"),
    # -- metrics -----------------------------------------------------------------------------
    Mutant("metric-ttft-too-strict", "slo_opt/metrics.py",
           "ttft_met = ok & (ttft <= workload.ttft_slo_s + SLO_TOL_S)",
           "ttft_met = ok & (ttft <= 0.6 * workload.ttft_slo_s + SLO_TOL_S)",
           (f"{T_GP}::test_replay_scores_exactly_the_objective",
            f"{T_GP}::test_fix_and_solve_every_scheduler"),
           "too-strict metric: TTFT met only within 0.6 x target"),
    Mutant("metric-tpot-too-lenient", "slo_opt/metrics.py",
           "tpot_met = ok & (tpot <= workload.tpot_slo_s + SLO_TOL_S)",
           "tpot_met = ok & (tpot <= 1.5 * workload.tpot_slo_s + SLO_TOL_S)",
           (f"{T_GP}::test_replay_scores_exactly_the_objective",
            f"{T_GP}::test_fix_and_solve_every_scheduler"),
           "too-lenient metric: TPOT met within 1.5 x target"),
    Mutant("metric-tpot-denominator", "slo_opt/metrics.py",
           "(fin - ft) / np.maximum(out_tok - 1, 1)", "(fin - ft) / np.maximum(out_tok, 1)",
           (f"{T_METRICS}::test_ttft_tpot_e2e_definitions",),
           "TPOT divides by all output tokens instead of those after the first"),
    # -- formulations and solver layer ------------------------------------------------------
    Mutant("milp-drops-kv-rows", "solvers/goodput_milp.py",
           "cat(kv_v, float),\n                                 -math.inf, float(M), T)",
           "cat(kv_v, float),\n                                 -math.inf, math.inf, T)",
           (f"{T_GP}::test_known_optimum",),
           "dropped capacity row: the goodput MILP's per-slot KV rows are unbounded"),
    Mutant("milp-drops-token-rows", "solvers/goodput_milp.py",
           "cat(tok_v, float),\n                                  -math.inf, float(B), T)",
           "cat(tok_v, float),\n                                  -math.inf, math.inf, T)",
           (f"{T_GP}::test_known_optimum",),
           "dropped capacity row: the goodput MILP's per-slot token budget is unbounded"),
    Mutant("safe-bound-clamps", "solvers/backends.py",
           "    if wrong <= BOUND_RTOL * max(1.0, abs(obj)):\n", "    if True:\n",
           (f"{T_HV}::test_wrong_side_bound_is_numerical_trouble_not_clamped",),
           "clamped bound: a dual bound on the wrong side of the incumbent by any amount is "
           "silently replaced by the incumbent (the pre-issue-12 _safe_bound)"),
    Mutant("highs-trusts-reported-optimum", "solvers/highs.py",
           "    if why and start is not None:\n", "    if False:\n",
           (f"{T_HV}::test_contradicting_solver_is_resolved_cold",),
           "a warm-started HiGHS answer contradicted by its own vector is not re-solved cold"),
)

#: Mutants allowed to survive, each with the reason (none today).
ALLOWED: dict[str, str] = {}


def _copy_tree(dst: Path) -> None:
    """Copy the repository's tracked and unignored files to ``dst`` (+ the package links)."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                           check=True, capture_output=True).stdout.decode().split("\0")
    for f in files:
        if not f or f.startswith("tests/mutants"):
            continue
        src = ROOT / f
        if not src.is_file():
            continue
        out = dst / f
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, out)
    # the installed (editable) package maps slo_opt.models / slo_opt.solvers to top-level
    # folders; in the copy the same mapping is made with links so the copy is what is imported
    for sub in ("models", "solvers"):
        (dst / "slo_opt" / sub).symlink_to(Path("..") / sub)


def _apply(root: Path, m: Mutant) -> None:
    p = root / m.path
    text = p.read_text()
    count = text.count(m.old)
    if count != 1:
        raise SystemExit(f"mutant {m.name}: snippet occurs {count} times in {m.path} (need 1)")
    p.write_text(text.replace(m.old, m.new))


def _check_imports(root: Path) -> None:
    """The copy, not the installed checkout, is what its tests import."""
    env = dict(os.environ, PYTHONPATH=str(root), PYTHONDONTWRITEBYTECODE="1")
    code = ("import slo_opt, slo_opt.solvers, slo_opt.models; "
            "print(slo_opt.__file__, slo_opt.solvers.__file__, slo_opt.models.__file__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    wrong = [f for f in out if not Path(f).resolve().is_relative_to(root.resolve())]
    if wrong or len(out) != 3:
        raise SystemExit(f"the mutated copy is not what is imported: {wrong or out}")


def _pytest(root: Path, tests: tuple[str, ...]) -> tuple[str, list[str], str]:
    """Run ``tests`` in ``root``; ('pass'|'fail'|'timeout'|'error', failed ids, output tail)."""
    env = dict(os.environ, PYTHONPATH=str(root), HYPOTHESIS_PROFILE="mutants",
               PYTHONDONTWRITEBYTECODE="1")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf", "-x",
           "--no-header", "-W", "ignore", *tests]
    try:
        r = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True,
                           timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return "timeout", [], ""
    out = r.stdout + r.stderr
    failed = sorted({ln.split()[1].split("[")[0] for ln in out.splitlines()
                     if ln.startswith(("FAILED ", "ERROR "))})
    if r.returncode == 0:
        return "pass", [], out[-2000:]
    if r.returncode == 1 and failed:
        return "fail", failed, out[-2000:]
    return "error", failed, out[-2000:]


def _run_one(m: Mutant | None, tests: tuple[str, ...]) -> tuple[str, list[str], str, float]:
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="slo_opt_mut_") as tmp:
        root = Path(tmp)
        _copy_tree(root)
        if m is None:
            _check_imports(root)
        else:
            _apply(root, m)
        verdict, failed, tail = _pytest(root, tests)
    return verdict, failed, tail, time.monotonic() - t0


def _short(test: str) -> str:
    return re.sub(r"^tests/", "", test)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-k", default="", help="only mutants whose name contains this")
    ap.add_argument("-j", type=int, default=2, help="parallel processes (default 2)")
    args = ap.parse_args(argv)
    if args.j < 1:
        raise SystemExit("-j must be >= 1")
    names = [m.name for m in MUTANTS]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise SystemExit(f"duplicate mutant names: {sorted(dup)}")
    unknown = set(ALLOWED) - set(names)
    if unknown:
        raise SystemExit(f"ALLOWED names unknown mutants: {sorted(unknown)}")
    chosen = [m for m in MUTANTS if args.k in m.name]
    if not chosen:
        raise SystemExit(f"no mutant matches -k {args.k!r}")
    t0 = time.monotonic()
    # every snippet must apply to the current source (a stale mutant is an error, not a kill)
    for m in chosen:
        text = (ROOT / m.path).read_text()
        if text.count(m.old) != 1:
            raise SystemExit(f"mutant {m.name}: snippet occurs {text.count(m.old)} times in "
                             f"{m.path} (need exactly 1); update the mutant")
    selected = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
    verdict, failed, tail, dt = _run_one(None, selected)
    print(f"baseline (unmutated): {len(selected)} test selections {verdict} in {dt:.0f} s")
    if verdict != "pass":
        print(tail)
        print(f"baseline is red ({', '.join(failed) or verdict}); aborting")
        print(f"mutants killed: 0/{len(chosen)}")
        return 2
    with ThreadPoolExecutor(max_workers=args.j) as pool:
        results = list(pool.map(lambda m: _run_one(m, m.tests), chosen))
    rows = []
    killed = 0
    survivors = []
    for m, (verdict, failed, tail, dt) in zip(chosen, results):
        is_killed = verdict in ("fail", "timeout", "error")
        killed += is_killed
        if not is_killed:
            survivors.append(m.name)
        by = ", ".join(_short(f) for f in failed) or verdict
        rows.append((m.name, m.path, by if is_killed else "-",
                     "yes" if is_killed else ("allowed" if m.name in ALLOWED else "NO"), dt))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    print(f"{'mutant':<{w0}}  {'target':<{w1}}  {'killed?':<7}  {'s':>4}  killing test(s)")
    for name, path, by, k, dt in rows:
        print(f"{name:<{w0}}  {path:<{w1}}  {k:<7}  {dt:4.0f}  {by}")
    for name in survivors:
        if name in ALLOWED:
            print(f"allowed survivor {name}: {ALLOWED[name]}")
    print(f"total {time.monotonic() - t0:.0f} s")
    print(f"mutants killed: {killed}/{len(chosen)}")
    return 1 if any(s not in ALLOWED for s in survivors) else 0


if __name__ == "__main__":
    sys.exit(main())
