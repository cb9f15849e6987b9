"""``python -m layer5_training.tuning worker --storage URL --study NAME --trials K [--worker I]``:
join the study ``NAME`` stored at ``URL`` and run ``K`` of its trials (see
:mod:`layer5_training.tuning.workers`). A bad URL, an unknown study or a bad count is one
``error: ...`` line and exit status 2."""

from __future__ import annotations

import argparse
import sys

from layer3_framework.train import USER_ERRORS
from layer5_training.tuning.search_space import SearchSpaceError
from layer5_training.tuning.study import SweepError
from layer5_training.tuning.workers import work, worker_id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m layer5_training.tuning")
    sub = parser.add_subparsers(dest="command", required=True)
    worker = sub.add_parser("worker", help="run trials of a shared study")
    worker.add_argument("--storage", required=True, help="study database URL (sqlite:///...)")
    worker.add_argument("--study", required=True, help="study name")
    worker.add_argument("--trials", type=int, required=True, help="trials this worker runs")
    worker.add_argument("--worker", type=int, default=0, help="index (TPE seed = seed + index)")
    args = parser.parse_args(argv)
    try:
        n = work(args.storage, args.study, args.trials, args.worker)
    except (SweepError, SearchSpaceError, *USER_ERRORS) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"worker {worker_id(args.worker)} ran {n} trials of {args.study} at {args.storage}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
