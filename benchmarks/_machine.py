"""What every benchmark prints about the machine and the code it measured (one place for both scripts)."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def read_loadavg() -> str:
    try:
        return open("/proc/loadavg").read().strip()
    except OSError:
        return "n/a"


def paperzoo_revision() -> str:
    """HEAD commit of the checkout, and whether the code the benchmark imports differs from it."""
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "paperzoo"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head or 'unknown'}{' with uncommitted or untracked files under paperzoo/' if dirty else ''}"


def machine_description(command: str, software: str) -> str:
    """Markdown bullets: command, commit, date, CPU and memory, `software` versions, load average."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    mem = "n/a"
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    return "\n".join([
        f"- command: `{command}`",
        f"- paperzoo: commit {paperzoo_revision()}",
        f"- date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"- CPU: {cpu_model()}, {cores} cores available ({os.cpu_count()} online), {mem} RAM",
        f"- {software}, Python {platform.python_version()}, {platform.system()} {platform.release()}",
        f"- load average at start: {read_loadavg()}",
    ])
