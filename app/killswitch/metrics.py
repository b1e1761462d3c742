"""Decision API figures for /metrics (Prometheus text format), per process.

Counters and the histogram are only touched on the event loop thread, so they need no lock.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field

# Seconds: a decision from memory takes tens of microseconds; the top buckets catch stalls.
BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)


@dataclass
class Histogram:
    buckets: tuple[float, ...] = BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.buckets, seconds)] += 1
        self.total += seconds

    def render(self, name: str) -> list[str]:
        lines, running = [], 0
        for bound, count in zip(self.buckets, self.counts, strict=False):
            running += count
            lines.append(f'{name}_bucket{{le="{bound:g}"}} {running}')
        running += self.counts[-1]
        lines += [
            f'{name}_bucket{{le="+Inf"}} {running}',
            f"{name}_sum {self.total:.6f}",
            f"{name}_count {running}",
        ]
        return lines


@dataclass
class DecisionStats:
    results: Counter[str] = field(default_factory=Counter)
    latency: Histogram = field(default_factory=Histogram)

    def render(self, switches: dict[str, int], index: dict[str, object]) -> str:
        name = "spendguard_decision_duration_seconds"
        lines = [
            "# HELP spendguard_decisions_total Decision API answers by result (allow, block, "
            "dry_run: allowed but a dry-run switch matched; unauthorized: token refused).",
            "# TYPE spendguard_decisions_total counter",
            *(
                f'spendguard_decisions_total{{result="{r}"}} {self.results[r]}'
                for r in sorted({"allow", "block", "dry_run", *self.results})
            ),
            f"# HELP {name} Time to answer a decision, token check included.",
            f"# TYPE {name} histogram",
            *self.latency.render(name),
            "# HELP spendguard_killswitches Open kill switches known to this process, by kind.",
            "# TYPE spendguard_killswitches gauge",
            *(f'spendguard_killswitches{{state="{k}"}} {n}' for k, n in sorted(switches.items())),
            "# HELP spendguard_killswitch_index_version The switch version this process enforces.",
            "# TYPE spendguard_killswitch_index_version gauge",
            f"spendguard_killswitch_index_version {index['version']}",
            "# HELP spendguard_killswitch_index_degraded 1 while the warehouse cannot be read "
            "and decisions use the last known switches.",
            "# TYPE spendguard_killswitch_index_degraded gauge",
            f"spendguard_killswitch_index_degraded {int(index['state'] != 'ok')}",
        ]
        return "\n".join(lines) + "\n"
