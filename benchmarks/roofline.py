"""The machine's convolution peak: the GFLOP/s of large 3x3 convolutions (the ConvNet's 128 -> 128 layer at a big
batch, where the kernel is compute-bound), forward and forward+backward, in fp32 and, where the CPU has bf16
units (detected), in bf16; and a large fp32 matmul beside them. Every speed result states its achieved GFLOP/s as a
fraction of `conv_peak()` measured in the same run (eval_speed.py imports it).

FLOPs are counted by torch.utils.flop_counter (2 per multiply-add), never estimated by hand.

  python benchmarks/roofline.py --out benchmarks/results/roofline-cpu.md
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import header, write_results  # noqa: E402

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402


def flops_of(fn) -> int:
    """The FLOPs one call of fn() performs, as torch counts them."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def gflops(fn, seconds: float = 2.0) -> float:
    """Sustained GFLOP/s of fn(): two warm-up calls, then calls for about `seconds`."""
    work = flops_of(fn)
    fn()
    fn()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or calls < 3:
        fn()
        calls += 1
    return work * calls / (time.perf_counter() - start) / 1e9


def _conv(batch: int, backward: bool, dtype: torch.dtype | None):
    x = torch.randn(batch, 128, 32, 32, requires_grad=backward)
    conv = torch.nn.Conv2d(128, 128, 3, padding=1)

    def run():
        with torch.autocast("cpu", dtype=dtype) if dtype else torch.autocast("cpu", enabled=False):
            y = conv(x)
        if backward:
            y.float().sum().backward()
        return y

    return run


def conv_peak(batch: int = 64) -> float:
    """fp32 GFLOP/s of the ConvNet's middle convolution at a large batch, forward and backward: the roofline."""
    return gflops(_conv(batch, True, None))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    from dsdistill.evaluate.engine import native_bf16
    rows = ["| kernel | precision | GFLOP/s |", "|---|---|---|"]
    cases = [("conv 3x3 128->128, 32x32, batch 64, forward", False, None),
             ("conv 3x3 128->128, 32x32, batch 64, forward + backward (the roofline)", True, None)]
    bf16 = native_bf16(torch.device("cpu"))
    if bf16:
        cases += [(name, back, torch.bfloat16) for name, back, _ in cases]
    for name, backward, dtype in cases:
        rows.append(f"| {name} | {'bf16' if dtype else 'fp32'} | {gflops(_conv(64, backward, dtype)):.1f} |")
        print(rows[-1], flush=True)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    rows.append(f"| matmul 2048 x 2048 | fp32 | {gflops(lambda: a @ b):.1f} |")
    write_results(args.out, header("Roofline: the machine's convolution and matmul peak") + [
        f"bf16 units: {'yes' if bf16 else 'no (bf16 rows skipped: it would be emulated)'} "
        "(torch.ops.mkldnn._is_mkldnn_bf16_supported). FLOPs from torch.utils.flop_counter.", "", *rows])


if __name__ == "__main__":
    main()
