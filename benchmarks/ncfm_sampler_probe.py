"""What NCFM's learned frequency sampler does to its frequencies, beside the Gaussian provider, in one run.

  python benchmarks/ncfm_sampler_probe.py --set pool=runs/pools/fmnist --ipc 1 --iterations 400 --every 50 \\
      --out benchmarks/results/fmnist-ncfm-probes/sampler.md

Runs `ncfm.fmnist-cpu` with sampler=learned (and any --set overrides) and, every --every iterations, reads the
frequencies psi gives for class 0 and compares them with a fresh Gaussian draw of the same shape:
- row norm ||t|| (the CF's scale: for unit features x, t.x has variance ||t||^2 / D when t is isotropic);
- the fraction of coordinates psi pushes into tanh's saturation (|t_i| > 0.99);
- the effective rank exp(H(sigma^2 / sum sigma^2)) of the frequency matrix, and the mean |cos| between rows
  (how many DIFFERENT directions the characteristic function is compared along);
- the discrepancy between real and synthetic embeddings (one fixed random ConvNet, one fixed real batch per class,
  no augmentation) at psi's frequencies and at fresh Gaussian ones.
No test data is touched: the probe explains the sampler's behaviour, it does not score sets.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import header, method_from_spec, write_results  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from dsdistill._seed import make_generator  # noqa: E402
from dsdistill.data import load_dataset  # noqa: E402
from dsdistill.synthesizers import Budget  # noqa: E402
from dsdistill.synthesizers.losses import cf_discrepancy  # noqa: E402


def effective_rank(freqs: torch.Tensor) -> float:
    """exp of the entropy of the normalised squared singular values: D for isotropic rows, 1 for one direction."""
    s2 = torch.linalg.svdvals(freqs) ** 2
    p = s2 / s2.sum()
    return float(torch.exp(-(p * p.clamp_min(1e-30).log()).sum()))


def mean_abs_cos(freqs: torch.Tensor) -> float:
    unit = F.normalize(freqs, dim=-1)
    cos = unit @ unit.T
    n = len(cos)
    return float((cos.abs().sum() - cos.diagonal().abs().sum()) / (n * (n - 1)))


def describe(freqs: torch.Tensor) -> dict[str, float]:
    return {"norm": float(freqs.norm(dim=-1).mean()), "saturated": float((freqs.abs() > 0.99).float().mean()),
            "rank": effective_rank(freqs), "cos": mean_abs_cos(freqs), "distinct": len(torch.unique(freqs, dim=0))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--method", default="ncfm.fmnist-cpu+sampler=learned")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--ipc", type=int, default=1)
    p.add_argument("--iterations", type=int, default=400)
    p.add_argument("--every", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    args = p.parse_args()

    method = method_from_spec(args.method, args.set).method
    real = load_dataset("fashion-mnist")
    probe_net = method.random_network(real, 12345, 0).eval()
    batches = [real.train.sample_class(c, 256, make_generator(999, "probe", c)) for c in real.class_ids]
    with torch.no_grad():
        real_emb = torch.stack([probe_net.features_and_embed(b)[1] for b in batches])
    rows: list[str] = []
    original_step = method.step
    start = time.perf_counter()

    def step(state, real_data, it, seed):
        figures = original_step(state, real_data, it, seed)
        if (it + 1) % args.every == 0 or it == 0:
            with torch.no_grad():
                dim = real_emb.shape[-1]
                learned = method.frequencies(state, 0, dim, seed, it)
                gauss = torch.randn(learned.shape, generator=make_generator(999, "gauss", it))
                syn = torch.stack([probe_net.features_and_embed(real_data.from_pixels(state.class_slice(c)))[1]
                                   for c in real_data.class_ids])
                cfg = method.config
                learned_all = torch.stack([method.frequencies(state, c, dim, seed, it) for c in real_data.class_ids])
                gauss_all = torch.randn(learned_all.shape, generator=make_generator(999, "gauss-all", it))
                d_learned = float(cf_discrepancy(real_emb, syn, learned_all, cfg.alpha, cfg.scale)) / len(syn)
                d_gauss = float(cf_discrepancy(real_emb, syn, gauss_all, cfg.alpha, cfg.scale)) / len(syn)
            a, g = describe(learned), describe(gauss)
            rows.append(f"| {it + 1} | {a['norm']:.2f} / {g['norm']:.2f} | {100 * a['saturated']:.1f}% | "
                        f"{a['rank']:.1f} / {g['rank']:.1f} | {a['cos']:.3f} / {g['cos']:.3f} | "
                        f"{a['distinct']} | {d_learned:.2f} / {d_gauss:.2f} | {figures.get('ascent', 0.0):.1f} | "
                        f"{time.perf_counter() - start:.0f} |")
            print(rows[-1], flush=True)
        return figures

    method.step = step
    method.fit(real, args.ipc, seed=args.seed, budget=Budget(iterations=args.iterations))
    dim = real_emb.shape[-1]
    lines = header(f"NCFM learned sampler probe: {args.method} {' '.join(args.set)}, IPC {args.ipc}")
    lines += [f"Embedding dimension D = {dim}; frequencies per class = {method.config.num_freqs}; psi's rows: "
              f"{method.config.num_freqs // method.config.sampler_tile} noise vectors tiled "
              f"{method.config.sampler_tile}x. Each cell: psi (class 0) / a Gaussian draw of the same shape.", "",
              "| iteration | mean ‖t‖ | psi coords saturated | effective rank | mean abs cos between rows | distinct rows "
              "| CF discrepancy per class at psi / at Gaussian (fixed net) | ascent figure | seconds |",
              "|---|---|---|---|---|---|---|---|---|", *rows]
    write_results(args.out, lines)


if __name__ == "__main__":
    main()
