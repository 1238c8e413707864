"""Shared by the benchmark scripts: wall time and peak memory of whole
commands, ours alone or alternating with another build's (UPSTREAM_BIN),
median of N runs, and the ratio ours / theirs."""

import os
import statistics
import subprocess
import sys
import time


def run_once(cmd, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL):
    """Runs cmd; returns its wall time in seconds. Fails loudly."""
    start = time.perf_counter()
    p = subprocess.run(cmd, stdout=stdout, stdin=stdin, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if p.returncode != 0:
        sys.exit(f"bench: {' '.join(cmd)} exited {p.returncode}: {p.stderr.decode(errors='replace').strip()[:300]}")
    return elapsed


def peak_rss(cmd, stdout=subprocess.DEVNULL):
    """Peak RSS of cmd in KiB, through GNU time: a child forked from this
    Python process would count Python's own memory until its exec."""
    p = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], stdout=stdout, stderr=subprocess.PIPE)
    if p.returncode != 0:
        sys.exit(f"bench: {' '.join(cmd)} exited {p.returncode}")
    return int(p.stderr.decode().strip().splitlines()[-1])


def fmt_time(s):
    return f"{s * 1000:.1f} ms" if s < 1 else f"{s:.2f} s"


def compare(label, ours, theirs=None, runs=11, between=None, stdout=subprocess.DEVNULL):
    """Alternates ours and theirs (when given) `runs` times; `between` runs
    before every single run (e.g. unmounting). Prints one line each and the
    ratio; returns (ours median, theirs median or None)."""
    t_ours, t_theirs = [], []
    for _ in range(runs):
        for cmd, times in ((ours, t_ours), (theirs, t_theirs)):
            if cmd is None:
                continue
            if between:
                between()
            times.append(run_once(cmd, stdout=stdout))
    if between:
        between()
    m_ours = peak_rss(ours, stdout=stdout)
    mo = statistics.median(t_ours)
    line = f"{label}: ours {fmt_time(mo)} / {m_ours / 1024:.1f} MiB"
    if theirs is None:
        print(line + f"  ({runs} runs)")
        return mo, None
    if between:
        between()
    m_theirs = peak_rss(theirs, stdout=stdout)
    mt = statistics.median(t_theirs)
    print(line + f"; upstream {fmt_time(mt)} / {m_theirs / 1024:.1f} MiB; "
          f"ratio time {mo / mt:.2f}, memory {m_ours / m_theirs:.2f}  ({runs} alternating runs)")
    return mo, mt


def upstream_bin():
    """UPSTREAM_BIN: a directory with another build's mkcomposefs,
    composefs-info and mount.composefs (or nothing)."""
    d = os.environ.get("UPSTREAM_BIN")
    if not d:
        return None
    for tool in ("mkcomposefs", "composefs-info"):
        if not os.access(os.path.join(d, tool), os.X_OK):
            sys.exit(f"bench: UPSTREAM_BIN={d} has no executable {tool}")
    return d
