"""Writes docs/benchmarks.md and docs/img/*.png from the results of one `make bench` run.

Inputs (each optional: a missing one becomes a note in the report, never a crash):
benches/results/*.json written by compare.py, threads.py, processes.py, hit_ratio.py and
memory.py; criterion's estimates under target/criterion/; docs/profile-notes.md,
docs/single-flight-bench.md and docs/codec-bench.md (from benches/codec.py, run by hand),
copied in verbatim. Also rewrites the summary between the
markers in README.md's Benchmarks section (--no-readme: leave it).

    python benches/report.py [--results benches/results] [--out docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from common import machine_line

ROOT = Path(__file__).resolve().parent.parent
PROFILE_NOTES = ROOT / "docs" / "profile-notes.md"
SINGLE_FLIGHT = ROOT / "docs" / "single-flight-bench.md"
CODEC = ROOT / "docs" / "codec-bench.md"
CRITERION = ROOT / "target" / "criterion"

# The issue-7 targets, checked against this run's numbers.
HITS_VS_LRU = 1.0
MISS_COST_VS_LRU = 1.5
SHARED_VS_MEMORY = 0.6
FT_SCALING = 1.8
FT_VS_LRU = 2.0
HIT_RATIO_POINTS = 0.5


def load(path: Path) -> dict[str, Any] | None:
    try:
        with open(path) as f:
            data: dict[str, Any] = json.load(f)
            return data
    except (OSError, ValueError):
        return None


def ratio(r: float) -> str:
    return f"{r:.2f}x" if r >= 0.1 else f"{r:.3f}x"


def header(meta: dict[str, Any]) -> list[str]:
    return [f"Measured on: {machine_line(meta)}.", "", f"Command: `{meta['command']}`", ""]


def throughput_tables(data: dict[str, Any]) -> list[str]:
    meta = data["meta"]
    out = header(meta) + [
        f"{meta['rounds']} interleaved rounds of {meta['calls']:,} calls each (diskcache: "
        f"1/{meta['slow_share']} of them, it runs at microseconds per call); each cell is the "
        "median round. Times include the loop that makes the calls (the same for everyone).",
        "",
    ]
    for work in data["workloads"]:
        ns: dict[str, float] = work["ns"]
        base = next(
            (b for b in ("lru_cache", "lru_cache (no TTL)", "dict (manual)") if b in ns), None
        )
        memory = ns.get("warp_cache")
        cols = "| cache | ns per call | calls/s | speed vs warp_cache memory |"
        rule = "|---|---:|---:|---:|"
        if base:
            cols += f" speed vs {base} |"
            rule += "---:|"
        out += [f"### {work['title']}", "", cols, rule]
        for label, value in sorted(ns.items(), key=lambda kv: kv[1]):
            row = f"| {label} | {value:,.1f} | {1e9 / value:,.0f} |"
            row += f" {ratio(memory / value)} |" if memory else " - |"
            if base:
                row += f" {ratio(ns[base] / value)} |"
            out.append(row)
        if work["skipped"]:
            out += [
                "",
                "Not measured: " + "; ".join(f"{k}: {v}" for k, v in work["skipped"].items()) + ".",
            ]
        out.append("")
    return out


def rate_tables(data: dict[str, Any], unit: str, own: str, versus: str | None) -> list[str]:
    out = header(data["meta"])
    for work in data["workloads"]:
        rates = {tuple(k.split("|")): v for k, v in work["rates"].items()}
        cols = f"| cache | {unit} | calls/s (total) | vs its own 1 {own} |"
        rule = "|---|---:|---:|---:|"
        ref = rates.get((versus, "2")) if versus else None
        if ref:
            cols += f" vs {versus}, 2 {own}s |"
            rule += "---:|"
        out += [f"### {work['title']}", "", cols, rule]
        for (label, n), rate in sorted(rates.items()):
            one = rates.get((label, "1"))
            row = f"| {label} | {n} | {rate:,.0f} | {ratio(rate / one) if one else '-'} |"
            if ref:
                row += f" {ratio(rate / ref)} |"
            out.append(row)
        out.append("")
    return out


def hit_ratio_tables(runs: dict[str, dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for name, data in runs.items():
        out += [f"### {name}", ""] + header(data["meta"])
        out += [
            "| trace | max_size | shards | warp_cache | exact SIEVE | warp_cache - SIEVE | LRU |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for row in data["rows"]:
            warp, sieve = row["warp_cache"], row["sieve"]
            gap = round(warp - sieve, 2) + 0.0  # no "-0.00"
            out.append(
                f"| {row['trace']} | {row['size']:,} | {row['shards']} | {warp:.2f}% | "
                f"{sieve:.2f}% | {gap:+.2f} pt | {row['lru']:.2f}% |"
            )
        out.append("")
    return out


def payload_table(data: dict[str, Any]) -> list[str]:
    out = header(data["meta"])
    rows = data["payloads"]
    order = ["memory hit", "shared repeated hit", "shared first decode", "pickle.loads"]
    present = {c for row in rows.values() for c in row}
    columns = [c for c in order + ["diskcache hit"] if c in present]
    kinds = ["int", "10-field dict", "list of 100 ints", "3-level nested tuple"]
    rows = {k: rows[k] for k in sorted(rows, key=lambda k: kinds.index(k) if k in kinds else 99)}
    out += [
        "| payload | " + " | ".join(columns) + " | shared repeated ÷ memory |",
        "|---|" + "---:|" * (len(columns) + 1),
    ]
    for name, row in rows.items():
        cells = " | ".join(f"{row[c]:,.0f} ns" if c in row else "-" for c in columns)
        out.append(f"| {name} | {cells} | {row['shared repeated hit'] / row['memory hit']:.1f}x |")
    return out + [""]


def storage_table(data: dict[str, Any]) -> list[str]:
    out = [
        f"{data['entries']:,} entries per payload; bytes the files occupy on their file "
        "system (st_blocks), at decoration and full.",
        "",
        "| cache | payload | at decoration | full | per entry |",
        "|---|---|---:|---:|---:|",
    ]
    for label, rows in data["results"].items():
        for kind, row in rows.items():
            out.append(
                f"| {label} | {kind} | {row['at decoration']:,.0f} | {row['full']:,.0f} "
                f"| {row['per entry']:,.0f} |"
            )
    return out + [""]


def stampede_table(data: dict[str, Any]) -> list[str]:
    out = [
        f"{data['processes']} processes start at once, each calling a "
        f"{data['seconds_per_call'] * 1000:.0f} ms function on {data['keys']} keys; median of "
        f"{data['rounds']} rounds. Computations: how many times the function ran in all "
        f"(ideal: {data['keys']}); wall: from the start until the last process finished.",
        "",
        "| cache | order | computations | wall |",
        "|---|---|---:|---:|",
    ]
    for label, rows in data["results"].items():
        for order, row in rows.items():
            out.append(
                f"| {label} | {order} | {row['computations']:,.0f} | {row['seconds']:.2f} s |"
            )
    return out + [""]


def memory_table(data: dict[str, Any]) -> list[str]:
    out = header(data["meta"])
    if not data["rows"]:
        return out + [f"Not measured: {data.get('skipped', 'no data')}.", ""]
    per = {(r["cache"], r["keys"]): r["bytes_per_entry"] for r in data["rows"]}
    kinds = sorted({k for _, k in per}, key=["int", "str20"].index)
    names = {"int": "int keys", "str20": "20-char str keys"}
    out += [
        f"Resident-set growth over {data['meta']['entries']:,} entries, median of "
        f"{data['meta']['repeats']} fresh processes; the keys exist before and after.",
        "",
        "| cache | " + " | ".join(f"bytes/entry, {names[k]}" for k in kinds) + " |",
        "|---|" + "---:|" * len(kinds),
    ]
    for cache in dict.fromkeys(c for c, _ in per):
        out.append(f"| {cache} | " + " | ".join(f"{per[(cache, k)]:.1f}" for k in kinds) + " |")
    return out + [""]


def criterion_rows() -> list[tuple[str, str, float]]:
    rows = []
    for bench in sorted(CRITERION.glob("*/*/new/benchmark.json")):
        try:
            info = json.loads(bench.read_text())
            estimates = json.loads((bench.parent / "estimates.json").read_text())
        except (OSError, ValueError):
            continue
        elements = (info.get("throughput") or {}).get("Elements") or 1
        ns = estimates["median"]["point_estimate"] / elements
        rows.append((info["group_id"], info["function_id"], ns))
    return rows


def criterion_table(rows: list[tuple[str, str, float]]) -> list[str]:
    if not rows:
        return ["Not run: `make bench-rust` writes them (criterion, `target/criterion/`).", ""]
    out = [
        "Command: `make bench-rust` (`cargo bench --no-default-features --bench stores`), "
        "`benches/stores.rs`. Median time per operation (batched benchmarks divided by "
        "their batch); full reports in `target/criterion/`.",
        "",
        "| group | benchmark | ns per operation |",
        "|---|---|---:|",
    ]
    out += [f"| {group} | {name} | {ns:,.1f} |" for group, name, ns in rows]
    return out + [""]


def targets(
    gil: dict[str, Any] | None,
    ft: dict[str, Any] | None,
    ratios: dict[str, dict[str, Any]],
) -> list[str]:
    out = [
        "| target (issue 7) | measured in this run | met |",
        "|---|---:|:---:|",
    ]

    def row(text: str, value: float | None, fmt: str, ok: bool | None) -> None:
        shown = "not measured" if value is None else fmt.format(value)
        out.append(f"| {text} | {shown} | {'-' if ok is None else ('yes' if ok else 'no')} |")

    ns = {w["key"]: w["ns"] for w in gil["workloads"]} if gil else {}
    hits, misses = ns.get("hits", {}), ns.get("misses", {})

    def quotient(a: float | None, b: float | None) -> float | None:
        return a / b if a and b else None

    value = quotient(hits.get("lru_cache"), hits.get("warp_cache"))
    row(
        f"3.11, memory hits >= {HITS_VS_LRU}x lru_cache speed",
        value,
        "{:.2f}x",
        value and value >= HITS_VS_LRU,
    )
    value = quotient(misses.get("warp_cache"), misses.get("lru_cache"))
    row(
        f"3.11, miss cost <= {MISS_COST_VS_LRU}x lru_cache's",
        value,
        "{:.2f}x",
        value and value <= MISS_COST_VS_LRU,
    )
    value = quotient(hits.get("warp_cache"), hits.get("warp_cache (shared)"))
    row(
        f"3.11, shared hits >= {SHARED_VS_MEMORY}x memory-hit speed",
        value,
        "{:.2f}x",
        value and value >= SHARED_VS_MEMORY,
    )
    rates = {}
    if ft:
        hits_ft = next((w for w in ft["workloads"] if w["key"] == "hits"), None)
        rates = hits_ft["rates"] if hits_ft else {}
    value = quotient(rates.get("warp_cache|2"), rates.get("warp_cache|1"))
    row(
        f"3.13t, 2 threads >= {FT_SCALING}x own 1 thread (hits)",
        value,
        "{:.2f}x",
        value and value >= FT_SCALING,
    )
    value = quotient(rates.get("warp_cache|2"), rates.get("lru_cache|2"))
    row(
        f"3.13t, 2 threads >= {FT_VS_LRU}x lru_cache, 2 threads (hits)",
        value,
        "{:.2f}x",
        value and value >= FT_VS_LRU,
    )
    sharded = [
        abs(r["warp_cache"] - r["sieve"])
        for data in ratios.values()
        for r in data["rows"]
        if r["shards"] > 1
    ]
    value = max(sharded) if sharded else None
    row(
        f"sharded caches within {HIT_RATIO_POINTS} points of exact SIEVE (largest gap)",
        value,
        "{:.2f} pt",
        value is not None and value <= HIT_RATIO_POINTS,
    )
    single = [
        abs(r["warp_cache"] - r["sieve"])
        for data in ratios.values()
        for r in data["rows"]
        if r["shards"] == 1
    ]
    if single:
        row(
            "one-shard caches equal exact SIEVE (largest gap)",
            max(single),
            "{:.2f} pt",
            max(single) == 0,
        )
    out.append("")
    control = quotient(
        rates.get("warp_cache (private per thread, control)|2"),
        rates.get("warp_cache (private per thread, control)|1"),
    )
    if control is not None:
        out += [
            f"Scaling control: in this run, private per-thread caches (nothing shared) reached "
            f"{control:.2f}x with 2 threads on 3.13t (2.00x is two idle cores). A scaling target "
            "cannot be judged above what the control reaches; rerun on an idle machine.",
            "",
        ]
    return out


def plots(
    img: Path,
    gil: dict[str, Any] | None,
    ft: dict[str, Any] | None,
    procs: dict[str, Any] | None,
    ratios: dict[str, dict[str, Any]],
    memory: dict[str, Any] | None,
) -> dict[str, str]:
    """Draws what there is data for; returns {name: relative path} of the written PNGs."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return {}
    img.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        fig.savefig(img / f"{name}.png", dpi=110)
        plt.close(fig)
        written[name] = f"img/{name}.png"

    if gil:
        works = gil["workloads"]
        labels = list(dict.fromkeys(label for w in works for label in w["ns"]))
        fig, ax = plt.subplots(figsize=(11, 4.8))
        width = 0.8 / max(1, len(labels))
        for i, label in enumerate(labels):
            xs = [j + i * width for j, w in enumerate(works) if label in w["ns"]]
            ys = [w["ns"][label] for w in works if label in w["ns"]]
            ax.bar(xs, ys, width, label=label)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(works))], [w["key"] for w in works])
        ax.set_yscale("log")
        ax.set_ylabel("ns per call (log scale, lower is better)")
        ax.set_title(f"Single process, Python {gil['meta']['python']} ({gil['meta']['build']})")
        ax.legend(fontsize=8, ncol=4)
        ax.grid(axis="y", alpha=0.3)
        save(fig, "ns-per-call")

    for name, data, unit in (("threads", ft, "threads"), ("processes", procs, "processes")):
        if not data:
            continue
        works = data["workloads"]
        fig, axes = plt.subplots(1, len(works), figsize=(5.5 * len(works), 4), squeeze=False)
        for ax, work in zip(axes[0], works, strict=True):
            rates = {tuple(k.split("|")): v for k, v in work["rates"].items()}
            contenders = list(dict.fromkeys(label for label, _ in rates))
            for n, offset in (("1", -0.2), ("2", 0.2)):
                ax.bar(
                    [i + offset for i in range(len(contenders))],
                    [rates.get((c, n), 0) / 1e6 for c in contenders],
                    0.4,
                    label=f"{n} {unit if n == '2' else unit[: -2 if unit == 'processes' else -1]}",
                )
            ax.set_xticks(
                range(len(contenders)), [c.replace(" (", "\n(") for c in contenders], fontsize=8
            )
            ax.set_ylabel("million calls/s (total)")
            ax.set_title(work["title"], fontsize=9)
            ax.legend(fontsize=8)
            ax.grid(axis="y", alpha=0.3)
        save(fig, name)

    for run_name, data in ratios.items():
        curves: dict[str, list[dict[str, Any]]] = {}
        for r in data["rows"]:
            if r["group"] == "curve":
                curves.setdefault(r["trace"], []).append(r)
        if not curves:
            continue
        fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 4), squeeze=False)
        for ax, (trace, rows) in zip(axes[0], curves.items(), strict=True):
            sizes = [r["size"] for r in rows]
            ax.plot(sizes, [r["lru"] for r in rows], "s--", label="LRU")
            ax.plot(sizes, [r["sieve"] for r in rows], "o-", label="exact SIEVE")
            ax.plot(sizes, [r["warp_cache"] for r in rows], "x:", label="warp_cache", markersize=9)
            ax.set_xscale("log")
            ax.set_xlabel("max_size")
            ax.set_ylabel("hit ratio %")
            ax.set_title(trace, fontsize=8)
            ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
        fig.suptitle(f"Hit ratio, {run_name}", fontsize=10)
        save(fig, "hit-ratio-" + ("free-threaded" if "free" in run_name else "gil"))

    if memory and memory["rows"]:
        rows = memory["rows"]
        caches = list(dict.fromkeys(r["cache"] for r in rows))
        kinds = list(dict.fromkeys(r["keys"] for r in rows))
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for i, kind in enumerate(kinds):
            values = {r["cache"]: r["bytes_per_entry"] for r in rows if r["keys"] == kind}
            ax.bar(
                [j + (i - 0.5) * 0.4 for j in range(len(caches))],
                [values[c] for c in caches],
                0.4,
                label=kind,
            )
        ax.set_xticks(range(len(caches)), caches)
        ax.set_ylabel("bytes per entry")
        ax.set_title(f"Memory per entry ({memory['meta']['entries']:,} entries)", fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        save(fig, "memory")
    return written


README_START = "<!-- benchmarks summary: written by benches/report.py -->"
README_END = "<!-- end of benchmarks summary -->"


def readme_summary(
    gil: dict[str, Any] | None,
    ratios: dict[str, dict[str, Any]],
    memory: dict[str, Any] | None,
) -> list[str]:
    """A few headline lines for the README, from the same numbers as docs/benchmarks.md."""
    lines = []
    ns = {w["key"]: w["ns"] for w in gil["workloads"]} if gil else {}
    hits, misses = ns.get("hits", {}), ns.get("misses", {})
    if gil and "warp_cache" in hits and "lru_cache" in hits:
        text = (
            f"- Hits (CPython {gil['meta']['python']}): {hits['warp_cache']:.0f} ns per call "
            f"against `lru_cache`'s {hits['lru_cache']:.0f} ns "
            f"({hits['lru_cache'] / hits['warp_cache']:.2f}x its speed)"
        )
        shared = hits.get("warp_cache (shared)")
        if shared:
            text += f"; the shared backend {shared:.0f} ns"
            if "diskcache" in hits:
                text += f" ({hits['diskcache'] / shared:.0f}x diskcache's speed)"
        lines.append(text + ".")
    if "warp_cache" in misses and "lru_cache" in misses:
        lines.append(
            f"- Misses (insert + evict): {misses['warp_cache']:.0f} ns against "
            f"{misses['lru_cache']:.0f} ns ({misses['warp_cache'] / misses['lru_cache']:.2f}x "
            "`lru_cache`'s cost)."
        )
    peers = [p for p in ("cachetools", "cachebox", "moka_py") if p in hits]
    if peers and "warp_cache" in hits:
        fastest = min(hits[p] for p in peers)
        lines.append(
            f"- Peers ({', '.join(peers)}): a hit takes {fastest / hits['warp_cache']:.0f}x "
            "warp_cache's time or more."
        )
    rows = [r for data in ratios.values() for r in data["rows"]]
    scans = [r for r in rows if "scan" in r["trace"] and r["group"] == "large"]
    if rows:
        gap = max(abs(r["warp_cache"] - r["sieve"]) for r in rows)
        text = f"- Hit ratio: within {gap:.2f} points of exact SIEVE on every trace and size"
        if scans:
            r = scans[0]
            text += (
                f"; with scans at max_size {r['size']:,}, {r['warp_cache']:.1f}% against LRU's "
                f"{r['lru']:.1f}%"
            )
        lines.append(text + ".")
    if memory and memory["rows"]:
        per = {(r["cache"], r["keys"]): r["bytes_per_entry"] for r in memory["rows"]}
        if ("warp_cache", "int") in per and ("lru_cache", "int") in per:
            lines.append(
                f"- Memory: {per[('warp_cache', 'int')]:.0f} bytes per entry against "
                f"`lru_cache`'s {per[('lru_cache', 'int')]:.0f} (int keys, 1M entries)."
            )
    if lines:
        lines.append(
            "- Measured on a shared, loaded 2-core machine: read ratios, not absolute numbers."
        )
    return lines


def update_readme(lines: list[str]) -> bool:
    readme = ROOT / "README.md"
    try:
        text = readme.read_text()
    except OSError:
        return False
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start or not lines:
        return False
    block = README_START + "\n" + "\n".join(lines) + "\n"
    readme.write_text(text[:start] + block + text[end:])
    return True


def verbatim(path: Path, missing: str) -> list[str]:
    try:
        return [path.read_text().rstrip("\n"), ""]
    except OSError:
        return [missing, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=str(ROOT / "benches" / "results"))
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    parser.add_argument(
        "--no-readme", dest="readme", action="store_false", help="leave README.md alone"
    )
    args = parser.parse_args()
    results = Path(args.results)
    gil = load(results / "gil.json")
    ft = load(results / "free-threaded.json")
    procs = load(results / "processes.json")
    memory = load(results / "memory.json")
    ratios = {
        name: data
        for name, data in (
            ("CPython with the GIL (one shard)", load(results / "hit-ratio-gil.json")),
            (
                "free-threaded CPython (caches above 1,024 entries sharded)",
                load(results / "hit-ratio-free-threaded.json"),
            ),
        )
        if data
    }
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    images = plots(out_path.parent / "img", gil, ft, procs, ratios, memory)

    def image(name: str, alt: str) -> list[str]:
        return [f"![{alt}]({images[name]})", ""] if name in images else []

    def missing(what: str) -> list[str]:
        return [f"Not measured in this run ({what} results missing).", ""]

    doc = [
        "# Benchmarks",
        "",
        "<!-- Generated by `make bench` (benches/report.py): edit the scripts, not this file. -->",
        "",
        "Everything below was produced by one `make bench` run on the machine named under each "
        "table. That machine is small (2 cores) and shared with builds, fuzzers and model "
        "checkers, so absolute numbers move from run to run by tens of percent; each ratio "
        "compares contenders measured in the same run, in interleaved rounds (every round runs "
        "every contender once, in a shuffled order), and reports the median round. Treat "
        "differences of less than ~15% as noise. Rerun with `make bench`; the Rust "
        "microbenchmarks alone with `make bench-rust`; any script by hand with `--quick` for a "
        "20x smaller smoke run.",
        "",
        "All contenders cache the same trivial function (`identity(x)`), so what is measured "
        "is the cache: key building, lookup, bookkeeping and the call overhead of the wrapper.",
        "",
        "## Targets",
        "",
    ]
    if not (gil or ft or ratios):
        doc += missing("all")
    else:
        doc += targets(gil, ft, ratios)
    if not images:
        doc += [
            "(No plots: matplotlib is not installed; `pip install -r benches/requirements.txt`.)",
            "",
        ]
    doc += ["## Single process", ""]
    doc += (
        (throughput_tables(gil) + image("ns-per-call", "ns per call"))
        if gil
        else missing("compare.py")
    )
    doc += [
        "## Threads (free-threaded CPython)",
        "",
        "Each thread replays its own trace through one cached function; throughput is all calls "
        "divided by the wall time from a common start until the last thread ends.",
        "",
    ]
    doc += (
        (rate_tables(ft, "threads", "thread", "lru_cache") + image("threads", "threads"))
        if ft
        else missing("threads.py")
    )
    doc += [
        "## Shared backend across processes",
        "",
        "Two worker processes hit one cache at once: warp_cache's shared backend (mmap files) "
        "and diskcache's `memoize` (SQLite in one directory), both warmed by the parent. The "
        "memory backend (a private cache in each process, nothing shared) is the control: it "
        "shows how far this machine scales to 2 processes at all. diskcache replays "
        f"1/{procs['meta']['slow_share'] if procs else 20} of the calls.",
        "",
    ]
    if procs:
        doc += rate_tables(procs, "processes", "process", None) + image("processes", "processes")
        if procs.get("skipped"):
            doc += [
                "Not measured: "
                + "; ".join(f"{k}: {v}" for k, v in procs["skipped"].items())
                + ".",
                "",
            ]
    else:
        doc += missing("processes.py")
    doc += [
        "### Payloads",
        "",
        "A hit by value kind (256 warm keys, values built per key). The shared backend keeps "
        "each process's decoded copy of an entry, so a repeated hit of an unchanged entry "
        "returns the same object without decoding; *first decode* is the hit of an entry this "
        "process has not decoded yet (written by another process), beside `pickle.loads` of "
        "the same value.",
        "",
    ]
    payloads = load(results / "payloads.json")
    doc += payload_table(payloads) if payloads else missing("payloads.py")
    doc += [
        "## Hit ratio",
        "",
        "The same trace through a warp_cache-decorated function (hits and misses read from "
        "`cache_info()`), an exact SIEVE simulator and an LRU simulator (`benches/hit_ratio.py`), "
        "at equal size. Scan traces insert runs of never-repeated keys into the Zipf trace. With "
        "the GIL every cache is one shard and must equal exact SIEVE to the hit; on free-threaded "
        "builds caches above 1,024 entries are split into up to 16 shards (max_size 100,000: 16), "
        "each running SIEVE on its share of the budget. The shards column restates the rule in "
        "`src/py/memory_backend.rs` (the extension does not report it).",
        "",
    ]
    if ratios:
        doc += hit_ratio_tables(ratios)
        doc += image("hit-ratio-gil", "hit ratio, GIL") + image(
            "hit-ratio-free-threaded", "hit ratio, free-threaded"
        )
    else:
        doc += missing("hit_ratio.py")
    doc += ["## Memory per entry", ""]
    doc += (
        (memory_table(memory) + image("memory", "memory per entry"))
        if memory
        else missing("memory.py")
    )
    storage = load(results / "shared-storage.json")
    before = load(ROOT / "benches" / "baselines" / "shared-storage-fixed-slots.json")
    if storage and before:  # the fixed-slot build's rows, measured once (issue 14's "before")
        storage["results"].update(before["results"])
    doc += [
        "### Shared storage per entry",
        "",
        "`benches/shared_storage.py`: a shared cache of max_size = entries (max_value_size 32 "
        "KiB) filled with one payload kind, in a fresh process, against diskcache's memoize.",
        "",
    ]
    doc += storage_table(storage) if storage else missing("shared_storage.py")
    stampede = load(results / "stampede.json")
    doc += [
        "## Cold-start stampede across processes",
        "",
        "`benches/stampede.py`: single-flight across processes (shared backend) against the "
        "same backend with it off and against diskcache.",
        "",
    ]
    if stampede:
        doc += header(stampede["meta"])
    doc += stampede_table(stampede) if stampede else missing("stampede.py")
    doc += ["## Rust microbenchmarks", ""] + criterion_table(criterion_rows())
    if SINGLE_FLIGHT.exists():
        doc += ["## Single-flight", ""] + verbatim(SINGLE_FLIGHT, "")
    if CODEC.exists():
        doc += ["## Shared backend codec", ""] + verbatim(CODEC, "")
    doc += [
        "## Where the time goes",
        "",
        "What a hit costs, step by step, from profiles (perf, callgrind) of the hit path. The "
        "notes below are kept in `docs/profile-notes.md` and copied here verbatim.",
        "",
    ]
    doc += verbatim(
        PROFILE_NOTES,
        "<!-- profile notes -->\n\n(No profile notes yet: docs/profile-notes.md is missing.)",
    )
    out_path.write_text("\n".join(doc).rstrip("\n") + "\n")
    print(f"wrote {os.path.relpath(out_path)} and {len(images)} plots")
    if args.readme and update_readme(readme_summary(gil, ratios, memory)):
        print("updated the benchmarks summary in README.md")


if __name__ == "__main__":
    main()
