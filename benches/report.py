#!/usr/bin/env python3
"""Writes the README's "Performance" section from criterion's output.

Usage:
    python3 benches/report.py [--readme README.md] [CRITERION_DIR]

CRITERION_DIR defaults to target/criterion. Every figure comes from the files criterion
0.8 writes for each benchmark, <dir>/<group>/<function>[/<value>]/new/{benchmark,
estimates}.json: the median of one iteration, divided by the benchmark's element
throughput where it has one; ratios are to replisync's median in the same group and
size. With --readme, the text between the markers <!-- perf:begin --> and
<!-- perf:end --> is replaced; otherwise it is printed.

A benchmark left out of the latest run keeps its older files: the range of times the
files were written is printed, so a mixed set shows. Delete the directory first to be
sure every figure comes from one run.
"""

import datetime
import os
import json
import platform
import re
import subprocess
import sys
from pathlib import Path

CORE = [
    ("register_merge", "register merge", "register"),
    ("map_full_merge", "full-state map merge (B into a copy of A)", "map key"),
    ("map_delta_merge", "10-key delta into an N-key map", "delta key"),
    ("codec_full_state", "1,000-record state, encode / decode", "record"),
    ("codec_delta", "one-record delta, encode / decode", None),
    ("propagation_pump", "one write until N replicas hold it, one thread pumping the hub", None),
    ("propagation_threads", "one write until N replicas hold it, a driver thread each", None),
]
FAILOVER = "failover_simulated_ms"
PEER_GROUPS = [
    ("full_merge", "full-state merge, per map key"),
    ("delta_merge", "10-key delta into an N-key map, per delta key"),
]
PEER_ORDER = ["replisync", "crdts-map", "crdts-registers", "yrs-encode-apply", "yrs-apply",
              "automerge-merge", "automerge-apply"]


def load(root):
    results, written = [], []
    for bench_file in sorted(root.glob("**/new/benchmark.json")):
        est_file = bench_file.with_name("estimates.json")
        if not est_file.is_file():
            continue
        bench = json.loads(bench_file.read_text())
        est = json.loads(est_file.read_text())
        results.append({
            "group": bench["group_id"],
            "function": bench.get("function_id") or "",
            "value": bench.get("value_str") or "",
            "median_ns": est["median"]["point_estimate"],
            "elements": (bench.get("throughput") or {}).get("Elements"),
        })
        written.append(est_file.stat().st_mtime)
    return results, written


def human(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def name(r):
    return "/".join(p for p in (r["function"], r["value"]) if p)


def core_table(results):
    lines = ["| benchmark | median | per unit |", "|---|---:|---:|"]
    for group, title, unit in CORE:
        rows = [r for r in results if r["group"] == group]
        for r in sorted(rows, key=lambda r: (r["function"], int(r["value"]) if r["value"].isdigit() else 0, r["value"])):
            per = ""
            if unit and r["elements"]:
                per = f"{r['median_ns'] / r['elements']:,.1f} ns / {unit}"
            lines.append(f"| {title}: `{name(r)}` | {human(r['median_ns'])} | {per} |")
    rows = [r for r in results if r["group"] == FAILOVER]
    for r in sorted(rows, key=name):
        # Simulated milliseconds travel through criterion's time axis (see benches/failover.rs).
        lines.append(f"| leader failover in the simulator: `{name(r)}` | {r['median_ns'] / 1e6:,.1f} simulated ms | |")
    return "\n".join(lines)


def peer_table(results, group):
    rows = [r for r in results if r["group"] == group]
    base = {r["value"]: r["median_ns"] for r in rows if r["function"] == "replisync"}
    lines = ["| N | library | median | per key | replisync is faster by |", "|---:|---|---:|---:|---:|"]
    order = lambda r: (int(r["value"]), PEER_ORDER.index(r["function"]) if r["function"] in PEER_ORDER else 99)
    for r in sorted(rows, key=order):
        per = r["median_ns"] / (r["elements"] or 1)
        ratio = f"{r['median_ns'] / base[r['value']]:.2f}×" if r["value"] in base else "n/a"
        lines.append(f"| {int(r['value']):,} | {r['function']} | {human(r['median_ns'])} | {per:,.1f} ns | {ratio} |")
    return "\n".join(lines)


def machine():
    model = ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        m = re.search(r"Model name:\s*(.+)", out)
        model = m.group(1).strip() if m else ""
    except OSError:
        pass
    cores = os.cpu_count()
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    return f"{model or platform.processor()}, {cores} cores, {platform.system()} {platform.release()}, {rustc}"


def section(root):
    results, written = load(root)
    if not results:
        sys.exit(f"{root}: no criterion results (run the benchmarks first)")
    out = [core_table(results)]
    sizes_file = root / "codec_sizes.json"
    if sizes_file.is_file():
        s = json.loads(sizes_file.read_text())
        n = s["records"]
        out.append(
            f"Encoded size of the {n:,}-record state: JSON {s['json_full']:,} bytes "
            f"({s['json_full'] / n:.1f} per record), binary {s['binary_full']:,} bytes "
            f"({s['binary_full'] / n:.1f} per record, full stamp included); "
            f"one-record delta: JSON {s['json_delta']} bytes, binary {s['binary_delta']} bytes."
        )
    for group, title in PEER_GROUPS:
        if any(r["group"] == group for r in results):
            out.append(f"Against other libraries, {title} (one criterion run; the workload is "
                       f"described in `benches/peers/benches/peers.rs`):\n\n{peer_table(results, group)}")
    utc = lambda t: datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out.append(f"Machine: {machine()}. Results written between {utc(min(written))} and {utc(max(written))}.")
    return "\n\n".join(out)


def main(argv):
    readme = None
    if len(argv) > 1 and argv[1] == "--readme":
        readme = Path(argv[2])
        argv = argv[:1] + argv[3:]
    root = Path(argv[1]) if len(argv) > 1 else Path("target/criterion")
    text = section(root)
    if readme is None:
        print(text)
        return
    body = readme.read_text()
    begin, end = "<!-- perf:begin -->", "<!-- perf:end -->"
    if begin not in body or end not in body:
        sys.exit(f"{readme}: markers {begin} / {end} not found")
    head, rest = body.split(begin, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{begin}\n{text}\n{end}{tail}")


if __name__ == "__main__":
    main(sys.argv)
