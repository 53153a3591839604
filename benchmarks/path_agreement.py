"""Does a faster evaluation keep the scores? Each published set is scored again with another path (the compiled
`fast` path) or under another precision (`dc-bf16`), and its 5 listed models are compared with the set's stored
`dc` loop record (benchmarks/results/store) by Welch's t-test (scipy.stats.ttest_ind, equal_var=False).

A path that claims the loop's function (fast: the same models and draws, fused kernels) should give p near 1; a
precision that changes the numerics is a protocol of its own whatever p says (Protocol.precision), and p only
says how far its scores move.

  python benchmarks/path_agreement.py synthetic_sets/dm.fmnist-cpu-ipc1-seed0.h5 synthetic_sets/dm.fmnist-cpu-ipc10-seed0.h5 \
      --path fast --out benchmarks/results/path-agreement-cpu.md
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, header, write_results  # noqa: E402

from scipy import stats  # noqa: E402

from dsdistill.data import load_dataset  # noqa: E402
from dsdistill.evaluate import evaluate, get_protocol  # noqa: E402
from dsdistill.synset import SyntheticSet  # noqa: E402

STORE = ROOT / "results" / "store" / "eval"


def stored_loop(set_sha256: str, protocol_hash: str) -> dict:
    """The store's record of this set under this protocol (the figure of record)."""
    path = STORE / f"{set_sha256[:16]}-{protocol_hash}.json"
    if not path.exists():
        sys.exit(f"no stored record {path.name} for this set under dc: score it with `dsdistill bench` first")
    return json.loads(path.read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sets", nargs="+")
    p.add_argument("--path", default="fast", help="the path to test (default: fast)")
    p.add_argument("--protocol", default="dc", help="dc, or dc-bf16 to measure what bf16 moves")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    reference = get_protocol("dc")
    proto = get_protocol(args.protocol)
    real = load_dataset("fashion-mnist", device="cpu")
    rows = ["| set | IPC | stored dc loop (%) | this run (%) | per-model, this run | Welch t | p | hardware of the "
            "stored record |", "|---|---|---|---|---|---|---|---|"]
    for path in args.sets:
        synset = SyntheticSet.load(path)
        record = stored_loop(synset.payload_sha256(), reference.hash)
        before = record["report"]["results"][0]["accuracies"]
        after = evaluate(synset, proto, data=real, device="cpu", path=args.path).results[0].accuracies
        t, pval = stats.ttest_ind(after, before, equal_var=False)
        mean = lambda xs: f"{100 * statistics.mean(xs):.2f} ± {100 * statistics.pstdev(xs):.2f}"  # noqa: E731
        rows.append(f"| {Path(path).name} | {synset.ipc} | {mean(before)} | {mean(after)} | "
                    f"{', '.join(f'{100 * a:.2f}' for a in after)} | {t:.2f} | {pval:.3f} | {record['hardware']} |")
        print(rows[-1], flush=True)
    title = f"Score agreement: path {args.path} under {proto.name} against the stored dc loop"
    write_results(args.out, header(title) + [
        f"Each set's {reference.num_models} listed models (seeds {', '.join(map(str, reference.seeds))}) trained with "
        f"path `{args.path}` under `{proto.name}` on this machine, against the same set's stored `dc` record (path "
        "loop). Welch's t-test (unequal variances); std is the population std. The stored record may come from "
        "another CPU: its hardware is listed.", "", *rows])


if __name__ == "__main__":
    main()
