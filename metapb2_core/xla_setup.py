"""Split the CPU into one XLA host device per core, before JAX starts; keep compiled programs.

A population's members are independent programs. Measured on a 2-core machine, running half of a
4-member population on each of two single-core host devices reaches 270–291 GFLOP/s in the PPO
update, against 236–262 GFLOP/s for one device whose small matmuls are split across both cores
(three runs of ``benchmarks/bench_population.py``). ``PopulationTrainer`` shards members over the
devices this creates. Set ``METAPB2_HOST_DEVICES`` to choose the count (1 turns the split off); an
``XLA_FLAGS`` that already names a device count is left alone, and nothing changes once JAX has
started.

On a CPU with AVX-512, XLA's fused elementwise loops are generated for 512-bit vectors instead of
its default 256: the 4-member PPO update ran ~5 % faster (8 of 8 interleaved pairs on a 2-core
AMD EPYC, 0.67–0.71 s vs 0.71–0.74 s per 3 epochs). An ``XLA_FLAGS`` naming a vector width wins.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import re
import shutil
import sys
import time
from pathlib import Path

_FLAG = "--xla_force_host_platform_device_count"
_VECTOR_WIDTH = "--xla_cpu_prefer_vector_width"


@functools.cache
def _cpu_description() -> str:
    """The first processor's model name and feature flags (Linux), else the platform's words."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return f"{platform.machine()} {platform.processor()}"
    first = info.split("\n\n", 1)[0].splitlines()
    keep = [line for line in first if line.split(":")[0].strip() in ("model name", "flags", "Features")]
    return "\n".join(keep) or f"{platform.machine()} {platform.processor()}"


def _cpu_model() -> str:
    lines = _cpu_description().splitlines()
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")


def host_cpu() -> dict[str, object]:
    """The CPU a run's wall time depends on: model, AVX-512, and the cores this process may use."""
    cores = len(os.sched_getaffinity(0))
    return {"cpu": _cpu_model() or platform.machine(), "avx512": _has_avx512(), "cores": cores}


def machine_label(machine: dict | None) -> str:
    """A record's machine (``host_cpu`` plus the JAX backend) in words, the same for every run on
    one kind of machine: "AMD EPYC, AVX-512, 2 cores"; "not recorded" for records older than the field."""
    if not machine:
        return "not recorded"
    extra = ", AVX-512" if machine.get("avx512") else ""
    backend = "" if machine.get("backend") == "cpu" else f", {machine.get('backend')}"
    return f"{machine['cpu']}{extra}, {machine['cores']} cores{backend}"


def _has_avx512() -> bool:
    return " avx512f " in f" {_cpu_description().replace(chr(10), ' ')} "


def default_cache_dir() -> Path:
    """~/.cache/metapb2/jax/<CPU type>: the model name and a hash of its feature flags."""
    slug = "-".join(re.findall(r"[A-Za-z0-9]+", _cpu_model()))[:40] or platform.machine()
    digest = hashlib.sha256(_cpu_description().encode()).hexdigest()[:12]
    return Path.home() / ".cache" / "metapb2" / "jax" / f"{slug}-{digest}"


CACHE_MAX_BYTES = 2 << 30  # a Brax program is ~20-40 MB, a classic one ~2 MB
CACHE_MAX_AGE_DAYS = 30


def prune_other_cpu_caches(mine: Path, max_age_days: float = CACHE_MAX_AGE_DAYS) -> list[Path]:
    """Remove sibling cache folders (other CPU types) whose newest file is older than the age."""
    removed = []
    if not mine.parent.is_dir():
        return removed
    cutoff = time.time() - max_age_days * 86400
    for folder in mine.parent.iterdir():
        if folder == mine or not folder.is_dir():
            continue
        newest = max((f.stat().st_mtime for f in folder.rglob("*") if f.is_file()), default=0.0)
        if newest < cutoff:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def configure_host_devices() -> None:
    if "jax" in sys.modules:
        return
    # Compiled programs persist across processes: a second `metapb2 run` of the same environment
    # and budget skips compilation. One folder per CPU type, so a home directory shared by
    # different machines never hands one a program built for another's instruction set.
    # JAX_COMPILATION_CACHE_DIR="" turns this off.
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(default_cache_dir()))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "1")
    # Bounded: past the size, JAX evicts the least recently used programs; the folders of other CPU
    # types (a shared home directory) go when unused for CACHE_MAX_AGE_DAYS.
    os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(CACHE_MAX_BYTES))
    if os.environ["JAX_COMPILATION_CACHE_DIR"] == str(default_cache_dir()):
        prune_other_cpu_caches(default_cache_dir())
    # Loading a cached program logs a C++ warning ("Assume version compatibility") per program, and
    # on AMD Zen CPUs an error-level wall of text about "+prefer-no-gather" (a tuning hint, not an
    # instruction set: the program runs) ending in "could lead to ... SIGILL"; the cache is per CPU
    # type, so that message is always this false alarm. Failures still raise Python exceptions;
    # TF_CPP_MIN_LOG_LEVEL=2 shows the C++ errors again.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    flags = os.environ.get("XLA_FLAGS", "")
    if _FLAG not in flags:
        count = os.environ.get("METAPB2_HOST_DEVICES") or str(len(os.sched_getaffinity(0)))
        flags = f"{flags} {_FLAG}={int(count)}"
    if _VECTOR_WIDTH not in flags and _has_avx512():
        flags = f"{flags} {_VECTOR_WIDTH}=512"
    os.environ["XLA_FLAGS"] = flags.strip()


def limit_blas_threads() -> None:
    """One BLAS thread: the GP layer's matrices are small (N ≲ 1000), where OpenBLAS's threads
    only contend with each other and with XLA for the cores. Measured on this 2-core machine while
    another process ran: a 408 × 408 Cholesky took 35 ms with OpenBLAS's threads, 1.3 ms with one.
    ``METAPB2_BLAS_THREADS`` overrides the count."""
    count = int(os.environ.get("METAPB2_BLAS_THREADS", "1"))
    for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # for child processes
        os.environ.setdefault(var, str(count))
    from threadpoolctl import threadpool_limits

    threadpool_limits(count, user_api="blas")  # for the libraries this process already loaded
