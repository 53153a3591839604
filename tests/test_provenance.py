"""_provenance: the one clock, the one machine line (with CPU features read from the flags) and the one peak."""
from __future__ import annotations

import datetime as dt
import mmap
import os
import re
from pathlib import Path

import pytest
import torch

from dsdistill import _provenance as prov
from dsdistill.errors import ConfigError
from dsdistill.evaluate.report import Report

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512_bf16 amx_bf16 amx_tile amx_int8
"""


@pytest.fixture
def cpuinfo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def write(text: str) -> Path:
        path = tmp_path / "cpuinfo"
        path.write_text(text)
        monkeypatch.setattr(prov, "CPUINFO", path)
        return path
    return write


def test_utc_now_spellings_are_the_stored_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    record, stamp = prov.utc_now(), prov.utc_now(prov.FILE_STAMP)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", record)   # datetime.isoformat, as records hold
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stamp)           # as set files and manifests hold
    now = dt.datetime.now(dt.timezone.utc)
    assert abs((dt.datetime.fromisoformat(record) - now).total_seconds()) < 5
    assert record == dt.datetime.fromisoformat(record).replace(microsecond=0).isoformat()


def test_source_date_epoch_fixes_every_timestamp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "86400")
    assert prov.utc_now(prov.FILE_STAMP) == "1970-01-02T00:00:00Z"
    assert prov.utc_now() == "1970-01-02T00:00:00+00:00"
    report = Report(protocol="p", protocol_version=1, protocol_hash="h", dataset="d", set_sha256="s", set_path="x",
                    method="m", ipc=1, stored_images=1, labels="hard", label_bytes=8)
    assert report.created_utc == "1970-01-02T00:00:00+00:00"


def test_bad_source_date_epoch_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(ConfigError, match="SOURCE_DATE_EPOCH must be whole seconds since 1970, got 'yesterday'"):
        prov.utc_now()


def test_cpu_features_come_from_the_flags(cpuinfo) -> None:
    cpuinfo(CPUINFO)
    assert prov.cpu_features() == ("AMX-BF16", "AMX-INT8", "AVX512-BF16", "AVX-512", "AVX2")
    cpuinfo(CPUINFO.replace(" avx512f avx512bw avx512_bf16 amx_bf16 amx_tile amx_int8", ""))
    assert prov.cpu_features() == ("AVX2",)
    cpuinfo("processor\t: 0\nFeatures\t: fp asimd evtstrm sve\n")  # ARM spells the field Features
    assert prov.cpu_features() == ("NEON", "SVE")


def test_hardware_line_keeps_its_stored_spelling(cpuinfo) -> None:
    cpuinfo(CPUINFO)
    plain = (f"Intel(R) Xeon(R) Processor, {os.cpu_count()} logical cores, torch {torch.__version__} "
             f"({torch.get_num_threads()} threads)")
    assert prov.hardware().startswith(plain)
    assert "AMX" not in prov.hardware()
    assert prov.hardware(features=True).startswith(
        "Intel(R) Xeon(R) Processor (AMX-BF16, AMX-INT8, AVX512-BF16, AVX-512, AVX2), ")


def test_cpu_model_without_cpuinfo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prov, "CPUINFO", tmp_path / "absent")
    assert prov.cpu_model() and prov.cpu_features() == ()


def test_status_figures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n")
    monkeypatch.setattr(prov, "STATUS", status)
    assert prov.status_mib("VmHWM") == 200.0 and prov.status_mib("VmRSS") == 100.0
    assert prov.peak_memory("cpu") == (200.0, "process peak RSS")
    assert prov.status_mib("VmSwap") is None


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's /proc")
def test_cpu_peak_is_reset_and_sees_an_allocation() -> None:
    assert prov.reset_peak_memory("cpu")
    before, kind = prov.peak_memory("cpu")
    assert kind == "process peak RSS" and before - prov.status_mib("VmRSS") < 16  # reset to the resident size
    block = mmap.mmap(-1, 64 * 2 ** 20)  # fresh pages (freed heap memory that malloc keeps would not grow the peak)
    block.write(b"x" * len(block))
    after, _ = prov.peak_memory("cpu")
    block.close()
    assert after - before > 50
