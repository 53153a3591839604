"""What every record and file says about how it was made: when (UTC), on what machine, at what peak memory.

One function of each, so that records, set files, model-folder manifests and benchmark tables cannot drift
apart. The strings they produce are stored (set files, suite records, manifests) and compared by people and
code, so their spellings are fixed here and must not change:

- `utc_now()`: whole seconds in UTC. Two spellings are stored, both kept for the files that already hold them:
  `RECORD_STAMP` ("2026-12-03T10:28:27+00:00", datetime.isoformat: reports, store records, benchmark headers) and
  `FILE_STAMP` ("2026-12-03T10:28:27Z": set-file attributes and model-folder manifests). ``$SOURCE_DATE_EPOCH``,
  when set, replaces the clock in both (reproducible files).
- `hardware()`: "CPU model, N logical cores, torch V (T threads)[, GPU name]". The CPU model name alone often
  says little ("Intel(R) Xeon(R) Processor" on some clouds), so `cpu_features()` reads what the CPU can do from
  /proc/cpuinfo's flags (AVX-512, AMX-BF16, ...) instead of anyone assuming it; `hardware(features=True)` adds
  them (benchmark tables, and store records since 2026-12-04: two AMD EPYCs of this project, one with
  AVX-512 and one without, printed the same plain line).
- `reset_peak_memory(device)` / `peak_memory(device)`: the peak allocated by torch on CUDA, the process's peak
  resident set (VmHWM) on the CPU.
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
import resource
from pathlib import Path

import torch

from .errors import ConfigError

RECORD_STAMP = "%Y-%m-%dT%H:%M:%S+00:00"
FILE_STAMP = "%Y-%m-%dT%H:%M:%SZ"

CPUINFO = Path("/proc/cpuinfo")  # module constants so tests can point them elsewhere
STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")

# /proc/cpuinfo flag -> the name people use, in the order a reader wants them (the widest vector unit first)
CPU_FEATURES: dict[str, str] = {
    "amx_bf16": "AMX-BF16", "amx_int8": "AMX-INT8", "avx512_bf16": "AVX512-BF16", "avx512_fp16": "AVX512-FP16",
    "avx512f": "AVX-512", "avx2": "AVX2", "asimd": "NEON", "sve": "SVE",
}

MEMORY_KINDS = {"cuda": "cuda allocated", "cpu": "process peak RSS"}  # stored in records as memory_kind


# ---------------------------------------------------------------------- time


def utc_now(spelling: str = RECORD_STAMP) -> str:
    """Now in UTC to the second, spelt with `spelling` (RECORD_STAMP or FILE_STAMP), or
    ``$SOURCE_DATE_EPOCH`` when set, for reproducible files."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch is None:
        moment = _dt.datetime.now(_dt.timezone.utc)
    else:
        try:
            moment = _dt.datetime.fromtimestamp(int(epoch), _dt.timezone.utc)
        except (ValueError, OverflowError, OSError) as err:
            raise ConfigError(f"SOURCE_DATE_EPOCH must be whole seconds since 1970, "
                              f"got {epoch!r}") from err
    return moment.strftime(spelling)


# ---------------------------------------------------------------------- machine


def _cpuinfo_field(name: str) -> str | None:
    """The first value of `name` in /proc/cpuinfo (None when absent or unreadable, e.g. off Linux)."""
    try:
        with open(CPUINFO) as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep and key.strip() == name:
                    return value.strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    """The CPU's model name ("model name" in /proc/cpuinfo, else what `platform` knows)."""
    model = _cpuinfo_field("model name")
    return model if model is not None else platform.processor() or platform.machine()


def cpu_features() -> tuple[str, ...]:
    """The vector and matrix units this CPU reports (CPU_FEATURES' names, in its order); () when unknown."""
    flags = set((_cpuinfo_field("flags") or _cpuinfo_field("Features") or "").split())  # x86 / ARM spelling
    return tuple(name for flag, name in CPU_FEATURES.items() if flag in flags)


def hardware(features: bool = False) -> str:
    """One line naming the machine the numbers came from (records store it with features=True)."""
    cpu = cpu_model()
    if features and cpu_features():
        cpu += f" ({', '.join(cpu_features())})"
    line = f"{cpu}, {os.cpu_count()} logical cores, torch {torch.__version__} ({torch.get_num_threads()} threads)"
    if torch.cuda.is_available():
        line += f", {torch.cuda.get_device_name()}"
    return line


# ---------------------------------------------------------------------- memory


def _on_cuda(device: str | torch.device) -> bool:
    return torch.device(device).type == "cuda"


def reset_peak_memory(device: str | torch.device) -> bool:
    """Start a new peak: torch's CUDA statistics, or the process's VmHWM (Linux resets it when 5 is written to
    /proc/self/clear_refs). False when the CPU peak cannot be reset (then it is the lifetime peak)."""
    if _on_cuda(device):
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return True
    try:
        with open(CLEAR_REFS, "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def status_mib(key: str) -> float | None:
    """A figure of /proc/self/status in MiB: VmHWM (peak resident set) or VmRSS (resident set now)."""
    try:
        with open(STATUS) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def peak_memory(device: str | torch.device) -> tuple[float, str]:
    """(MiB, kind): CUDA memory allocated by torch since the last reset, or the process's peak resident set
    since the last reset (the lifetime peak where /proc is missing)."""
    if _on_cuda(device):
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) / 2 ** 20, MEMORY_KINDS["cuda"]
    peak = status_mib("VmHWM")
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # lifetime peak (kB on Linux)
    return peak, MEMORY_KINDS["cpu"]
