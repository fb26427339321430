"""results.png: req/s per endpoint and stack, one panel per endpoint and process count."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .endpoints import ENDPOINTS
from .report import fmt_ms
from .targets import MINE, ok, table


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in results["runs"] if ok(r)]
    if not runs:
        return
    groups = sorted({r["group"] for r in runs})
    endpoints = list(dict.fromkeys(r["endpoint"] for r in runs))
    stacks = list(dict.fromkeys(r["stack"] for r in results["runs"]))
    palette = plt.get_cmap("tab10").colors
    colours = {s: palette[i % len(palette)] for i, s in enumerate(stacks)}
    fig, axes = plt.subplots(
        len(endpoints),
        len(groups),
        squeeze=False,
        figsize=(
            6.2 * len(groups),
            1.0 + 0.24 * len(stacks) * len(endpoints) + 0.5 * len(endpoints),
        ),
    )
    for gi, group in enumerate(groups):
        cells = table(results, group)
        for ei, endpoint in enumerate(endpoints):
            ax = axes[ei][gi]
            names = [s for s in stacks if (endpoint, s) in cells]
            values = [cells[(endpoint, s)]["rps"] if ok(cells[(endpoint, s)]) else 0 for s in names]
            y = range(len(names))
            ax.barh(y, values, color=[colours[s] for s in names])
            ax.set_yticks(list(y), names, fontsize=7)
            for label in ax.get_yticklabels():
                if label.get_text() in MINE:
                    label.set_fontweight("bold")
            ax.invert_yaxis()
            top = max(values, default=0) or 1
            ax.set_xlim(0, top * 1.25)
            for yi, (name, value) in enumerate(zip(names, values, strict=True)):
                row = cells[(endpoint, name)]
                text = f"{value:,.0f}" if ok(row) else "not run"
                if ok(row) and row.get("p99_ms") is not None:
                    text += f"  (p99 {fmt_ms(row['p99_ms'])})"
                ax.text(value + top * 0.01, yi, text, va="center", fontsize=6)
            conns = ENDPOINTS.get(endpoint, ("", "?"))[1]
            ax.set_title(f"{endpoint}, {conns} connections, {group} process(es): req/s", fontsize=8)
            ax.tick_params(axis="x", labelsize=6)
    m = results["machine"]
    fig.suptitle(
        f"hybrid vs peers ({results['mode']} pass, {results['date']}, {m['nproc']} cores,"
        f" {m['cpu']})",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(path, dpi=100)
    plt.close(fig)
