"""The CI gate: minimum (and maximum) values for summary metrics.

Thresholds come from a TOML file (evals/gate.toml: ``[min] metric = value``,
``[max] metric = value`` for lower-is-better metrics such as latency) and/or
``--min metric=value`` / ``--max metric=value`` on the command line (these win).
A gated metric that was not measured in the run (None) fails the gate: a gate
on refusal accuracy with no unanswerable questions must not pass silently.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from .files import read_text_file
from .schemas import GATE_METRICS, validate_gate

__all__ = ["GATE_METRICS", "LOWER_IS_BETTER", "Gate", "check_gate", "load_gate", "parse_thresholds"]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: Metrics where lower is better (compare and the markdown arrows use this too).
LOWER_IS_BETTER = frozenset({"false_refusal_rate", "latency_p50_ms", "latency_p95_ms", "judge_errors",
                             "failed", "errors"})


@dataclass
class Gate:
    min: dict[str, float] = field(default_factory=dict)
    max: dict[str, float] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.min or self.max)

    def merged(self, other: Gate) -> Gate:
        return Gate({**self.min, **other.min}, {**self.max, **other.max})


def _check_name(metric: str, where: str) -> str:
    metric = metric.strip()
    if metric not in GATE_METRICS:
        raise InputError(f"{where}: unknown metric '{metric}'; known: {', '.join(GATE_METRICS)}")
    return metric


def parse_thresholds(items: Sequence[str], option: str = "--min") -> dict[str, float]:
    """["hit_at_k=0.8", ...] -> {"hit_at_k": 0.8}."""
    out: dict[str, float] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep:
            raise InputError(f"{option} {item!r}: expected metric=value")
        metric = _check_name(name, f"{option} {item!r}")
        try:
            out[metric] = float(raw)
        except ValueError:
            raise InputError(f"{option} {item!r}: '{raw}' is not a number") from None
        if not math.isfinite(out[metric]):  # every comparison with nan is false: the gate would always pass
            raise InputError(f"{option} {item!r}: '{raw.strip()}' is not a finite number")
    return out


def load_gate(path: str | Path) -> Gate:
    path = Path(path)
    try:
        data = tomllib.loads(read_text_file(path, "gate file"))
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: cannot read gate file: {exc}") from None
    parsed = validate_gate(data, str(path))
    for table, values in (("min", parsed.min), ("max", parsed.max)):
        for k, v in values.items():
            if not math.isfinite(float(v)):
                raise InputError(f"{path}: [{table}] {k} = {v}: not a finite number (a nan or inf threshold "
                                 "would let every run pass)")
    return Gate({k: float(v) for k, v in parsed.min.items()}, {k: float(v) for k, v in parsed.max.items()})


def check_gate(summary: Mapping[str, Any], gate: Gate) -> list[str]:
    """Messages for every threshold the summary misses; empty = the gate passes."""
    failures: list[str] = []
    for metric, bound in gate.min.items():
        value = summary.get(metric)
        if value is None:
            failures.append(f"{metric}: not measured in this run (min {bound:g})")
        elif value != value:
            failures.append(f"{metric} is not a number in this run (min {bound:g})")
        elif value < bound:
            failures.append(f"{metric} = {value:.4g} < min {bound:g}")
    for metric, bound in gate.max.items():
        value = summary.get(metric)
        if value is None:
            failures.append(f"{metric}: not measured in this run (max {bound:g})")
        elif value != value:
            failures.append(f"{metric} is not a number in this run (max {bound:g})")
        elif value > bound:
            failures.append(f"{metric} = {value:.4g} > max {bound:g}")
    return failures
