"""Gantt charts of schedules: requests x time, each step coloured prefill / decode, idle gaps.

:func:`request_timeline` derives, from a :class:`~slo_opt.schedule.Schedule` alone, what each
request did in each step (prefill tokens, one decode token, or nothing while it waited,
stalled or was preempted); :func:`plot_side_by_side` draws two schedules of one workload next
to each other (a policy and the optimum) with arrivals, deadlines and met/missed marks, and
the per-step token and KV use under the engine's limits. Needs matplotlib (``experiments``
extra) for plotting only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from slo_opt.metrics import request_metrics
from slo_opt.request import Workload
from slo_opt.schedule import EventKind, Schedule

__all__ = ["Timeline", "plot_side_by_side", "request_timeline"]

COLOURS = {"prefill": "#1f77b4", "decode": "#2ca02c", "idle": "#dddddd", "preempt": "#d62728"}


@dataclass(frozen=True)
class Timeline:
    """Per (step, request) allocation rows with their phase, plus per-step KV use.

    Attributes
    ----------
    step, request, tokens : numpy.ndarray
        One row per request computing in a step.
    prefill : numpy.ndarray
        ``True`` for prefill (or recompute) tokens, ``False`` for a decode token.
    kv_tokens : numpy.ndarray
        Per step, KV tokens resident on the device at the end of the step (before the KV of
        requests finishing in it is freed).
    """

    step: np.ndarray
    request: np.ndarray
    tokens: np.ndarray
    prefill: np.ndarray
    kv_tokens: np.ndarray


def request_timeline(schedule: Schedule, workload: Workload) -> Timeline:
    """Classify every allocation as prefill or decode, replaying the token accounting.

    A step computes a decode token for a request iff it computes exactly one token, the
    request has emitted at least one output token and that one token completes its context
    (the rule of :func:`slo_opt.checks.violations`). Recompute preemptions reset the computed
    tokens; swaps move them off the device and back.
    """
    n = len(workload)
    st, rq, tk = schedule.allocs.expand()
    T = schedule.num_steps
    P = np.asarray(workload.prompt_tokens, np.int64)
    comp = np.zeros(n, np.int64)
    gen = np.zeros(n, np.int64)
    on_device = np.ones(n, bool)
    pf = np.zeros(st.size, bool)
    kv = np.zeros(T, np.int64)
    ev = schedule.events
    ev_order = np.lexsort((ev.request, ev.step))
    e_step, e_req, e_kind = ev.step[ev_order], ev.request[ev_order], ev.kind[ev_order]
    done = schedule.finish_step
    k = e = 0
    for t in range(T):
        while e < e_step.size and e_step[e] == t:
            r = int(e_req[e])
            if e_kind[e] == EventKind.PREEMPT_RECOMPUTE:
                comp[r] = 0
            elif e_kind[e] == EventKind.SWAP_OUT:
                on_device[r] = False
            elif e_kind[e] == EventKind.SWAP_IN:
                on_device[r] = True
            e += 1
        while k < st.size and st[k] == t:
            r, x = int(rq[k]), int(tk[k])
            on_device[r] = True  # a swapped request listed in a step is swapped in first
            need = P[r] + gen[r] - comp[r]
            pf[k] = not (x == 1 and need == 1 and gen[r] >= 1)
            comp[r] += x
            if comp[r] == P[r] + gen[r]:
                gen[r] += 1
            k += 1
        kv[t] = int(comp[on_device].sum())
        fin_here = np.flatnonzero(done == t)
        comp[fin_here] = 0
    return Timeline(step=st, request=rq, tokens=tk, prefill=pf, kv_tokens=kv)


def _panel(ax: Any, schedule: Schedule, workload: Workload, title: str, t_max: float) -> None:
    """One Gantt panel: a row per request, a bar per step."""
    tl = request_timeline(schedule, workload)
    m = request_metrics(schedule, workload)
    n = len(workload)
    s0, s1 = schedule.steps.start_s, schedule.steps.end_s
    a = np.asarray(workload.arrival_s, float)
    for i in range(n):
        end = m["finish_s"][i] if np.isfinite(m["finish_s"][i]) else t_max
        ax.barh(i, end - a[i], left=a[i], height=0.7, color=COLOURS["idle"], zorder=1)
    for phase, mask in (("prefill", tl.prefill), ("decode", ~tl.prefill)):
        if mask.any():
            ax.barh(tl.request[mask], s1[tl.step[mask]] - s0[tl.step[mask]],
                    left=s0[tl.step[mask]], height=0.7, color=COLOURS[phase], zorder=2,
                    edgecolor="white", linewidth=0.5)
    ev = schedule.events
    if len(ev):
        ax.scatter(s0[ev.step], ev.request, marker="x", color=COLOURS["preempt"], zorder=4,
                   label="preempted")
    ax.scatter(a, np.arange(n), marker="|", s=120, color="black", zorder=3)
    for i in range(n):
        for dl, style in ((workload.ttft_slo_s[i], ":"), (workload.e2e_slo_s[i], "--")):
            if np.isfinite(dl):
                ax.plot([a[i] + dl] * 2, [i - 0.45, i + 0.45], style, color="#d62728", lw=1.2,
                        zorder=3)
        ok = bool(m["slo_met"][i])
        ax.text(t_max * 1.01, i, "met" if ok else ("rejected" if m["rejected"][i] else "missed"),
                va="center", fontsize=7, color="#2ca02c" if ok else "#d62728")
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_yticks(range(n))
    ax.set_yticklabels([f"r{i} P{int(workload.prompt_tokens[i])} O{int(workload.output_tokens[i])}"
                        for i in range(n)], fontsize=7)
    ax.set_xlim(0, t_max * 1.12)
    ax.set_title(title, fontsize=9)


def _usage(ax: Any, schedule: Schedule, workload: Workload, engine: Any, t_max: float) -> None:
    """Per-step tokens and KV tokens against the engine's limits."""
    tl = request_timeline(schedule, workload)
    s0, s1 = schedule.steps.start_s, schedule.steps.end_s
    tok = np.bincount(tl.step, weights=tl.tokens, minlength=schedule.num_steps)
    ax.bar(s0, tok, width=s1 - s0, align="edge", color="#1f77b4", alpha=0.5,
           label="tokens / step")
    ax.bar(s0, tl.kv_tokens, width=s1 - s0, align="edge", fill=False, edgecolor="#9467bd",
           label="KV tokens (end of step)")
    for val, lab, col in ((engine.max_batch_tokens, "token budget", "#1f77b4"),
                          (engine.kv_capacity_tokens, "KV capacity", "#9467bd")):
        ax.axhline(val, ls="--", lw=0.8, color=col)
        ax.text(t_max * 1.01, val, lab, fontsize=6, va="center", color=col)
    ax.set_xlim(0, t_max * 1.12)
    ax.set_xlabel("time (s)")
    ax.legend(fontsize=6, loc="center right")


def plot_side_by_side(workload: Workload, engine: Any, left: Schedule, right: Schedule, *,
                      titles: tuple[str, str] = ("policy", "optimum"), suptitle: str = "",
                      path: str | Path | None = None) -> Any:
    """Two schedules of ``workload`` side by side (Gantt over usage); saves to ``path``.

    Black ticks mark arrivals, red dotted and dashed lines the TTFT and e2e deadlines; grey is
    time a request spent arrived but not computing (waiting, stalled, preempted); crosses mark
    preemptions. Returns the matplotlib figure.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t_max = max(left.makespan_s, right.makespan_s,
                float(np.max(workload.arrival_s)) if len(workload) else 0.0) or 1.0
    h = 1.6 + 0.32 * max(len(workload), 3)
    fig, axes = plt.subplots(2, 2, figsize=(12, h + 1.6), sharex="col",
                             gridspec_kw={"height_ratios": [h, 1.6]})
    for col, (s, title) in enumerate(zip((left, right), titles)):
        _panel(axes[0, col], s, workload, title, t_max)
        _usage(axes[1, col], s, workload, engine, t_max)
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles: list[Any] = [Patch(color=COLOURS[k], label=k) for k in ("prefill", "decode")]
    handles += [Patch(color=COLOURS["idle"], label="arrived, not computing"),
                Line2D([], [], marker="|", ls="", color="black", label="arrival"),
                Line2D([], [], ls=":", color="#d62728", label="TTFT deadline"),
                Line2D([], [], ls="--", color="#d62728", label="e2e deadline")]
    fig.legend(handles=handles, loc="lower center", ncol=6, fontsize=7, frameon=False)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    if path is not None:
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig
