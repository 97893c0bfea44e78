#!/usr/bin/env python3
"""Turns the fio JSON files of tests/bench/run_bench.sh into a Markdown report.

  fio_table.py --samples samples.tsv --meta meta.tsv --servers a,b --workloads w1,w2
      prints the report (summary with ratios, then per-sample detail)
  fio_table.py --one FILE.json
      prints "IOPS, MiB/s" of one fio result (for progress lines)
  fio_table.py --elapsed FILE.json
      prints the wall-clock seconds the fio run took (all jobs of the group)
"""
import argparse
import json
import statistics
import sys

LABELS = {
    "fleeced": "fleeced",
    "qemu-nbd": "qemu-nbd",
    "qemu-nbd-mt": "qemu-nbd(malloc-tuned)",
    "nbdkit": "nbdkit",
    "qsd": "qemu-storage-daemon",
    "local": "local file",
}
# Ratios printed as fleeced / X, in this order, when both were measured.
RATIO_BASES = ["qemu-nbd", "qemu-nbd-mt", "nbdkit", "qsd", "local"]


def workload_title(wl):
    kind, conns = wl.rsplit("-", 1)
    desc = {
        "seqread": "seq read 1M qd16",
        "seqwrite": "seq write 1M qd16",
        "randread": "rand read 4k qd32",
        "randwrite": "rand write 4k qd32",
        "allocwrite": "allocating write 4k/64k cluster qd32",
        "allocsparse": "allocating write 4k/64k cluster, empty backing, qd32",
    }[kind]
    return f"{desc}, {conns} conn" + ("" if conns == "1" else "s")


def load_job(path):
    """The first job (with --group_reporting: the whole group) of a fio JSON file."""
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    start = text.find("{")  # fio may print notes before the JSON
    if start < 0:
        raise ValueError(f"{path}: no JSON")
    return json.loads(text[start:])["jobs"][0]


def load_fio(path):
    """Returns dict(iops, mib_s, p99_us) summed over read+write of the first job."""
    job = load_job(path)
    if job.get("error", 0):
        raise ValueError(f"{path}: fio job error {job['error']}")
    iops = 0.0
    kib = 0.0
    p99 = None
    for d in ("read", "write"):
        part = job.get(d, {})
        if part.get("total_ios", 0) or part.get("iops", 0):
            iops += part.get("iops", 0.0)
            kib += part.get("bw", 0.0)
            pct = part.get("clat_ns", {}).get("percentile", {})
            if "99.000000" in pct:
                p99 = pct["99.000000"] / 1000.0
    if iops <= 0:
        raise ValueError(f"{path}: no I/O completed")
    return {"iops": iops, "mib_s": kib / 1024.0, "p99_us": p99}


def load_strace(path):
    """Returns (total calls, {syscall: calls}) from an `strace -c` summary."""
    calls = {}
    total = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.split()
            if len(parts) < 5 or parts[0].startswith(("%", "-")):
                continue
            name = parts[-1]
            # columns: %time seconds usecs/call calls [errors] syscall
            try:
                n = int(parts[3])
            except ValueError:
                continue
            if name == "total":
                total = n
            else:
                calls[name] = n
    return total or sum(calls.values()), calls


def total_ios(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    job = json.loads(text[text.find("{"):])["jobs"][0]
    return sum(job.get(d, {}).get("total_ios", 0) for d in ("read", "write"))


def syscall_section(path, servers, workloads):
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            header = f.readline().rstrip("\n").split("\t")
            entries = [dict(zip(header, l.rstrip("\n").split("\t"))) for l in f if l.strip()]
    except OSError:
        return []
    if not entries:
        return []
    by_key = {(e["workload"], e["server"]): e for e in entries}
    rows.append("## Server syscalls per request (strace -c -f, separate pass)")
    rows.append("")
    rows.append("Counted over the measured part of one extra sample with strace attached "
                "(which slows the server, so batching may differ from the timed runs).")
    rows.append("")
    rows.append("| workload | server | syscalls / request | top syscalls per request |")
    rows.append("|---|---|--:|---|")
    for wl in workloads:
        for s in servers:
            e = by_key.get((wl, s))
            if e is None:
                continue
            try:
                ios = total_ios(e["json"])
                total, calls = load_strace(e["strace"])
            except (OSError, ValueError, KeyError, IndexError) as ex:
                rows.append(f"| {workload_title(wl)} | {LABELS[s]} | – | failed: {ex} |")
                continue
            if ios <= 0:
                rows.append(f"| {workload_title(wl)} | {LABELS[s]} | – | no I/O |")
                continue
            top = sorted(calls.items(), key=lambda kv: -kv[1])[:5]
            tops = ", ".join(f"{k} {v / ios:.2f}" for k, v in top)
            rows.append(f"| {workload_title(wl)} | {LABELS[s]} | {total / ios:.2f} | {tops} |")
    rows.append("")
    return rows


def fmt_iops(v):
    if v is None:
        return "–"
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    if v >= 1e4:
        return f"{v / 1e3:.0f}k"
    if v >= 1e3:
        return f"{v / 1e3:.1f}k"
    return f"{v:.0f}"


def fmt_mib(v):
    if v is None:
        return "–"
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}"


def fmt_ratio(a, b):
    if a is None or b is None or b <= 0:
        return "–"
    r = a / b
    s = f"{r:.2f}×"
    return f"**{s}**" if r < 1.0 else s


def median_or_none(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def report(args):
    servers = [s for s in args.servers.split(",") if s]
    workloads = [w for w in args.workloads.split(",") if w]
    meta = {}
    notes = []
    with open(args.meta, encoding="utf-8") as f:
        for line in f:
            key, _, value = line.rstrip("\n").partition("\t")
            if key == "note":
                notes.append(value)
            else:
                meta[key] = value

    # (workload, server) -> list of sample dicts
    cells = {}
    failed = {}
    with open(args.samples, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        for line in f:
            row = dict(zip(header, line.rstrip("\n").split("\t")))
            key = (row["workload"], row["server"])
            if row["status"] != "ok":
                failed.setdefault(key, []).append(row["status"])
                continue
            try:
                res = load_fio(row["json"])
            except (OSError, ValueError, KeyError) as e:
                failed.setdefault(key, []).append(str(e))
                continue
            cpu = float(row["server_cpu_s"]) if row.get("server_cpu_s") else None
            secs = float(row["measured_s"]) if row.get("measured_s") else None
            res["cores"] = cpu / secs if cpu is not None and secs else None
            # CPU time the server spent per request (ramp excluded on both sides).
            res["us_per_io"] = (cpu / (res["iops"] * secs) * 1e6
                                if cpu is not None and secs else None)
            res["busy"] = int(row["busy_before"]) if row.get("busy_before") else None
            cells.setdefault(key, []).append(res)

    med = {}
    for key, samples in cells.items():
        med[key] = {k: median_or_none([s[k] for s in samples])
                    for k in ("iops", "mib_s", "p99_us", "cores", "us_per_io")}

    out = []
    out.append("# fleece NBD benchmark")
    out.append("")
    out.append(f"- date: {meta.get('date', '?')}")
    out.append(f"- machine: {meta.get('nproc', '?')} CPUs ({meta.get('cpu', '?')}), "
               f"{meta.get('mem', '?')} RAM, kernel {meta.get('kernel', '?')}")
    versions = [meta[k] for k in ("fio", "qemu-nbd", "qemu-storage-daemon", "nbdkit")
                if k in meta]
    out.append(f"- tools: {'; '.join(versions)}")
    if "fleeced" in meta:
        fa = f", extra args `{meta['fleeced_args']}`" if meta.get("fleeced_args") else ""
        out.append(f"- fleeced: {meta['fleeced']}{fa}")
    out.append(f"- image: {meta.get('image', '?')}; every server on a Unix socket, "
               "one server running at a time, fio's nbd engine (libnbd), one NBD "
               "connection per fio job")
    out.append(f"- each sample: {meta.get('runtime', '?')} s measured after "
               f"{meta.get('ramp', '?')} s ramp; median of {meta.get('repeats', '?')} "
               "rounds, server order rotated every round; local row: fio "
               f"{meta.get('local_engine', '?')} on the file")
    for n in notes:
        out.append(f"- {n}")
    out.append("")

    out.append("## Median IOPS / MiB/s")
    out.append("")
    bases = [b for b in RATIO_BASES if b in servers] if "fleeced" in servers else []
    head = ["workload"] + [LABELS[s] for s in servers] + \
        [f"fleeced / {LABELS[b]}" for b in bases]
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "|".join(["---"] + ["--:"] * (len(head) - 1)) + "|")
    for wl in workloads:
        row = [workload_title(wl)]
        for s in servers:
            m = med.get((wl, s))
            if m is None:
                row.append("FAIL" if (wl, s) in failed else "–")
            else:
                row.append(f"{fmt_iops(m['iops'])} / {fmt_mib(m['mib_s'])}")
        f = med.get((wl, "fleeced"))
        for b in bases:
            m = med.get((wl, b))
            row.append(fmt_ratio(f["iops"] if f else None, m["iops"] if m else None))
        out.append("| " + " | ".join(row) + " |")
    out.append("")
    if bases:
        out.append("Ratios compare median IOPS (equal to the MiB/s ratio); **bold** where "
                   "fleeced is slower.")
        out.append("")

    out.append("## Detail per (workload, server)")
    out.append("")
    out.append("Server CPU is the server process's user+system time during the measured "
               "part (all threads), as cores busy and as µs of CPU per request; "
               "busy = whole-box CPU use by other (un-niced) processes just before the sample "
               "(max over rounds).")
    out.append("")
    out.append("| workload | server | IOPS | MiB/s | min–max IOPS | p99 clat µs | "
               "server cores | server µs/req | busy % | n |")
    out.append("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|")
    for wl in workloads:
        for s in servers:
            samples = cells.get((wl, s), [])
            m = med.get((wl, s))
            nfail = len(failed.get((wl, s), []))
            if not samples:
                out.append(f"| {workload_title(wl)} | {LABELS[s]} | FAIL | | | | | | | "
                           f"0 ({nfail} failed) |")
                continue
            iops = [x["iops"] for x in samples]
            busy = [x["busy"] for x in samples if x["busy"] is not None]
            cores = f"{m['cores']:.2f}" if m["cores"] is not None else "–"
            us = f"{m['us_per_io']:.1f}" if m["us_per_io"] is not None else "–"
            p99 = f"{m['p99_us']:.0f}" if m["p99_us"] is not None else "–"
            n = f"{len(samples)}" + (f" ({nfail} failed)" if nfail else "")
            out.append(f"| {workload_title(wl)} | {LABELS[s]} | {fmt_iops(m['iops'])} | "
                       f"{fmt_mib(m['mib_s'])} | {fmt_iops(min(iops))}–{fmt_iops(max(iops))} | "
                       f"{p99} | {cores} | {us} | {max(busy) if busy else '–'} | {n} |")
    out.append("")
    if args.syscalls:
        out.extend(syscall_section(args.syscalls, servers, workloads))
    if failed:
        out.append("## Failed samples")
        out.append("")
        for (wl, s), why in sorted(failed.items()):
            out.append(f"- {workload_title(wl)} on {LABELS[s]}: {'; '.join(why)}")
        out.append("")
    print("\n".join(out))


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--one")
    p.add_argument("--elapsed")
    p.add_argument("--samples")
    p.add_argument("--meta")
    p.add_argument("--servers", default="")
    p.add_argument("--workloads", default="")
    p.add_argument("--syscalls")
    args = p.parse_args()
    if args.one:
        r = load_fio(args.one)
        print(f"{fmt_iops(r['iops'])} IOPS, {fmt_mib(r['mib_s'])} MiB/s")
        return 0
    if args.elapsed:
        print(load_job(args.elapsed).get("elapsed", 0))
        return 0
    if not (args.samples and args.meta):
        p.error("--samples and --meta are required")
    report(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
