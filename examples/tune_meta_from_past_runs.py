"""Meta-data from a user's own past Tune experiments, for a meta method in a new one.

1. PB2 tunes the CartPole agent on the moon and on Mars (examples/tune_cartpole.py); each Tune
   experiment writes our run record.
2. `metapb2 meta` turns those records into meta-data (build_meta_dir here).
3. TAF-PB2 tunes the agent on Earth with that meta-data; its record says which past runs informed
   each suggestion, with their weights.

    python examples/tune_meta_from_past_runs.py --out /tmp/tune_meta
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cartpole_agent  # noqa: E402
import tune_cartpole  # noqa: E402

from metapb2_core.meta.tables import build_meta_dir  # noqa: E402
from metapb2_core.space import SearchSpace  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("tune_meta"))
    p.add_argument(
        "--methods", nargs="+", default=["taf"], help="meta methods of step 3 (taf, metaprior, multitask)"
    )
    p.add_argument("--iterations", type=int, default=10)
    args = p.parse_args(argv)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    t0 = time.perf_counter()
    for planet in ("moon", "mars"):
        tune_cartpole.run("pb2", planet, seed=0, iterations=args.iterations, records=args.out / "past")
    written = build_meta_dir(
        args.out / "past", args.out / "meta", SearchSpace.from_dict(cartpole_agent.SPACE)
    )
    summary = {"meta_tables": len(written)}
    for method in args.methods:
        s = tune_cartpole.run(
            method,
            "earth",
            seed=1,
            iterations=args.iterations,
            meta=args.out / "meta",
            records=args.out / "earth",
        )
        diags = [json.loads(d) for d in s.record.perturbations["diagnostics"]]
        weights = [d.get("meta_weights") for d in diags if d.get("meta_weights")]
        summary[method] = {
            "meta_tasks": s.record.meta["meta_tasks"],
            "suggestions_informed_by_meta_data": len(weights),
            "lcm_fits": sum(d.get("surrogate") == "lcm" for d in diags),
            "best_final_eval_return": s.record.meta["best_final_eval_return"],
            "status": s.record.meta["status"],
        }
        sources = ", ".join(sorted(s.record.meta["meta_tasks"]))
        last = weights[-1] if weights else {}
        print(
            f"{method} on cartpole-earth with the meta-data of {sources}: {len(weights)} of {len(diags)} "
            f"suggestions weighted them (last: {last}); best final return "
            f"{s.record.meta['best_final_eval_return']:.0f}"
        )
    print(f"{time.perf_counter() - t0:.0f} s; 'metapb2 report {args.out / 'earth'}' ranks the runs on Earth")
    return summary


if __name__ == "__main__":
    main()
