"""What the ``scripts/gpu_*.sh`` rounds print into their ``summary.txt``: shared by their ``after_step``s, which run
from the repository root with the results folder as their argument::

    import json, sys
    sys.path.insert(0, "scripts")
    from gpu_summary import print_benches, results
    res, load = results()
"""
from __future__ import annotations

import functools
import json
import os
import sys

TOP_LEVEL = ("dropping_on_over_off_p50", "fp8", "weight_floor", "llm_step_over_engine_floor")  # printed when present


def load(res: str, name: str) -> dict | None:
    """``res/name`` as JSON, or None where it is missing or not (yet) whole."""
    try:
        return json.load(open(os.path.join(res, name)))
    except (OSError, ValueError):
        return None


def results() -> tuple[str, functools.partial]:
    """The results folder (the script's first argument) and ``load`` bound to it."""
    res = sys.argv[1]
    return res, functools.partial(load, res)


def print_benches(res: str, presets: tuple[str, ...]) -> None:
    """One line per variant of each ``bench-<preset>.json`` there is (frame p50/p99, ego-only, which kernels ran, the
    stage breakdown, the slow path, equality, error), then the run's summaries in ``TOP_LEVEL``."""
    for preset in presets:
        d = load(res, f"bench-{preset}.json")
        if not d:
            continue
        for name, v in d.get("variants", {}).items():
            fast, slow = v.get("fast", {}), v.get("slow", {})
            eq = v.get("equality_vs_bf16_engine") or v.get("equality")
            ran = {k: v[k] for k in ("route_kernels", "attention_run", "linear_kernel") if k in v}
            print(f"{preset} {name}: p50 {fast.get('p50_ms')} p99 {fast.get('p99_ms')} ms; first frame "
                  f"{fast.get('first_frame_ms')} ms; ego-only p50 {v.get('ego_only', {}).get('p50_ms')}; {ran}; breakdown "
                  f"{json.dumps(v.get('breakdown_ms'))}; slow {slow.get('tokens_per_second')} tokens/s; equality "
                  f"{json.dumps(eq)[:300]}; error {v.get('error')}")
        for key in TOP_LEVEL:
            if key in d:
                print(f"{preset} {key}: {json.dumps(d[key])[:600]}")
