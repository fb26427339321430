"""results.png: median req/s per endpoint and stack, with the rounds' min-max as error bars,
one panel per endpoint and cell (process count, mode).

    python -m scripts.bench.plot results.json results.png

Run in the bench virtualenv (matplotlib), which ``peers`` does after writing results.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .endpoints import ENDPOINTS
from .targets import MINE, cells, fmt, ok, table


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not any(ok(r) for r in results["runs"]):
        return
    columns = cells(results)
    endpoints = list(dict.fromkeys(r["endpoint"] for r in results["runs"]))
    stacks = list(dict.fromkeys(r["stack"] for r in results["runs"]))
    palette = plt.get_cmap("tab10").colors
    colours = {s: palette[i % len(palette)] for i, s in enumerate(stacks)}
    fig, axes = plt.subplots(
        len(endpoints),
        len(columns),
        squeeze=False,
        figsize=(
            5.2 * len(columns),
            1.0 + 0.24 * len(stacks) * len(endpoints) + 0.5 * len(endpoints),
        ),
    )
    for ci, (group, mode) in enumerate(columns):
        figures = table(results, group, mode)
        for ei, endpoint in enumerate(endpoints):
            ax = axes[ei][ci]
            names = [s for s in stacks if (endpoint, s) in figures]
            shown = [figures[(endpoint, s)] for s in names]
            values = [f["rps"] if ok(f) else 0 for f in shown]
            low = [f["rps"] - f["rps_min"] if ok(f) else 0 for f in shown]
            high = [f["rps_max"] - f["rps"] if ok(f) else 0 for f in shown]
            y = range(len(names))
            ax.barh(
                y,
                values,
                xerr=[low, high],
                color=[colours[s] for s in names],
                error_kw={"elinewidth": 0.8, "capsize": 2},
            )
            ax.set_yticks(list(y), names, fontsize=7)
            for label in ax.get_yticklabels():
                if label.get_text() == MINE:
                    label.set_fontweight("bold")
            ax.invert_yaxis()
            top = max([f["rps_max"] for f in shown if ok(f)], default=0) or 1
            ax.set_xlim(0, top * 1.35)
            for yi, f in enumerate(shown):
                text = f"{f['rps']:,.0f}" if ok(f) else "not run"
                if ok(f) and f.get("p99_ms") is not None:
                    text += f"  (p99 {fmt(f['p99_ms'])})"
                ax.text(
                    (f["rps_max"] if ok(f) else 0) + top * 0.01, yi, text, va="center", fontsize=6
                )
            conns = ENDPOINTS.get(endpoint, ("", "?"))[1]
            ax.set_title(
                f"{endpoint}, {conns} conns, {group} process(es), {mode}: req/s", fontsize=8
            )
            ax.tick_params(axis="x", labelsize=6)
    m = results["machine"]
    fig.suptitle(
        f"hybrid vs peers ({results['mode']} pass, {results.get('rounds', 1)} round(s),"
        f" {results['date']}, {m['nproc']} cores, {m['cpu']})",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    if len(sys.argv) != 3 or sys.argv[1] in ("-h", "--help"):
        print("usage: python -m scripts.bench.plot RESULTS.json OUT.png")
        raise SystemExit(0 if len(sys.argv) == 2 else 2)
    plot(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]))


if __name__ == "__main__":
    main()
