"""The renovation's promise kept as a test: the same small runs give the bytes they gave before the move.

Float results differ between CPU models (the remake check found DM's first loss differing in the 8th digit
between an Intel Xeon and an AMD EPYC), so the pinned hashes are keyed by the machine that made them:
CPU model, torch version and thread count. On a machine with no pins the float cases skip and say how to add
them; the integer-only selection (random) is pinned everywhere. Refresh on purpose only:
`python tests/test_same_bytes.py --pin` (after a change that is meant to change bytes, say so in its commit).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from conftest import make_tiny_real, tiny_committee_dir, tiny_experts_dir  # noqa: E402

from dsdistill._provenance import cpu_model  # noqa: E402
from dsdistill.evaluate import evaluate, get_protocol  # noqa: E402
from dsdistill.synthesizers import Budget, create_synthesizer  # noqa: E402

PINS = Path(__file__).with_name("same_bytes.json")
PORTABLE = {"select-random"}  # integer draws only: the same bytes on every CPU


def machine() -> str:
    return f"{cpu_model()} | torch {torch.__version__} | {torch.get_num_threads()} threads"


def _fit(name: str, **options) -> str:
    synth = create_synthesizer(name, **options)
    budget = Budget(iterations=3) if synth.kind == "synthesis" else None
    kwargs = {"budget": budget} if budget else {}
    return synth.fit(make_tiny_real(), 2, seed=0, **kwargs).payload_sha256()


def _evaluate(path: str) -> str:
    real = make_tiny_real()
    synset = create_synthesizer("random").fit(real, 3, seed=0)
    proto = dataclasses.replace(get_protocol("dc"), name="tiny", epochs=4, seeds=(0, 1), batch_size=16,
                                model_options=(("width", 8),))
    accs = evaluate(synset, proto, data=real, device="cpu", path=path).results[0].accuracies
    return hashlib.sha256(json.dumps([float(a) for a in accs]).encode()).hexdigest()


NARROW = {"width": 8, "batch_real": 6}
CASES = {
    "select-random": lambda: _fit("random"),
    "select-herding": lambda: _fit("herding"),
    "select-k-center": lambda: _fit("k-center"),
    "dm": lambda: _fit("dm", **NARROW),
    "dm-flip": lambda: _fit("dm", flip=True, **NARROW),
    "datadam": lambda: _fit("datadam", **NARROW),
    "ncfm": lambda: _fit("ncfm", extractor="random", num_freqs=32, **NARROW),
    "mtt": lambda: _fit("mtt", experts=tiny_experts_dir(), syn_steps=3, max_start_epoch=2, lr_img=10.0),
    "cvdd": lambda: _fit("cvdd", committee=tiny_committee_dir()),
    "evaluate-loop": lambda: _evaluate("loop"),
    "evaluate-vmap": lambda: _evaluate("vmap"),
}


def _pins() -> dict[str, dict[str, str]]:
    return json.loads(PINS.read_text()) if PINS.exists() else {}


@pytest.mark.parametrize("case", sorted(CASES))
def test_small_runs_give_the_pinned_bytes(case):
    pins = _pins()
    here = pins.get(machine())
    if case in PORTABLE:
        want = next((p[case] for p in pins.values() if case in p), None)
    else:
        want = None if here is None else here.get(case)
    if want is None:
        pytest.skip(f"no pinned bytes for {case!r} on {machine()!r}: run `python tests/test_same_bytes.py --pin` "
                    f"on a tree whose bytes you trust")
    assert CASES[case]() == want


if __name__ == "__main__":
    if "--pin" not in sys.argv:
        sys.exit("usage: python tests/test_same_bytes.py --pin   (records this machine's hashes)")
    pins = _pins()
    pins[machine()] = {name: make() for name, make in sorted(CASES.items())}
    PINS.write_text(json.dumps(pins, indent=1, sort_keys=True) + "\n")
    print(f"pinned {len(CASES)} cases for {machine()}")
