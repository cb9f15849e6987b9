"""``torch_ports``: scratch model vs its PyTorch twin, per model: the largest output and gradient
difference on one batch (float64), and the weight difference after 100 SGD steps side by side."""

from __future__ import annotations

from typing import Any

from layer0_math.lab import RunContext, deliverable
from layer3_framework.ports import compare_outputs_and_grads, compare_trajectories, port_cases


@deliverable(
    quick={"steps": 100, "lr": 0.05, "momentum": 0.9},
    headline=["max_abs_diff", "trajectory_max_diff"],
)
def torch_ports(ctx: RunContext) -> dict[str, Any]:
    """Scratch vs PyTorch twin, per model: output, gradient and 100-step trajectory differences."""
    cfg = ctx.config
    rows = []
    for case in ctx.progress(port_cases(ctx.seed), desc="ports"):
        out_diff, grad_diff = compare_outputs_and_grads(case)
        traj_diff, moved = compare_trajectories(case, cfg["steps"], cfg["lr"], cfg["momentum"])
        rows.append(
            {
                "model": case.name,
                "output_max_abs_diff": out_diff,
                "grad_max_abs_diff": grad_diff,
                "trajectory_max_diff": traj_diff,
                "trajectory_weight_change": moved,
            }
        )
    ctx.write_json("ports.json", rows)
    ctx.write_text("ports.md", _table(rows, cfg["steps"]))
    return _metrics(rows)


def _table(rows: list[dict[str, Any]], steps: int) -> str:
    lines = [
        "| model | max abs diff output | max abs diff gradient | "
        f"weights after {steps} SGD steps | largest weight change |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['model']} | {r['output_max_abs_diff']:.1e} | {r['grad_max_abs_diff']:.1e} | "
        f"{r['trajectory_max_diff']:.1e} | {r['trajectory_weight_change']:.2f} |"
        for r in rows
    ]
    return "\n".join(lines) + "\n"


def _metrics(rows: list[dict[str, Any]]) -> dict[str, Any]:
    metrics: dict[str, Any] = {
        "max_abs_diff": max(max(r["output_max_abs_diff"], r["grad_max_abs_diff"]) for r in rows),
        "trajectory_max_diff": max(r["trajectory_max_diff"] for r in rows),
        "min_trajectory_weight_change": min(r["trajectory_weight_change"] for r in rows),
    }
    for r in rows:
        metrics[f"{r['model']}_max_abs_diff"] = max(
            r["output_max_abs_diff"], r["grad_max_abs_diff"]
        )
        metrics[f"{r['model']}_trajectory_max_diff"] = r["trajectory_max_diff"]
    return metrics
