"""Machine facts printed at the top of every benchmark (compare ratios inside one run)."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from pathlib import Path


def machine_line() -> str:
    cpu = "?"
    try:
        with Path("/proc/cpuinfo").open(encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        load = ""
    return (
        f"machine: {cpu}, {os.cpu_count()} cpus, {load}; {platform.system()} "
        f"{platform.release()}; Python {sys.version.split()[0]}"
    )


def version_of(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"
