"""Run by tests/test_distributed.py under torchrun (2 gloo processes): every class-separable
method's sharded fit (CV-DD with the committee given) and a sharded evaluation on fake
Fashion-MNIST; rank 0 writes what it got as JSON for the test to compare with one process.
Usage: dist_worker.py DATA_ROOT OUT.json COMMITTEE_DIR"""
import json
import sys

from dsdistill.data import load_dataset
from dsdistill._distributed import init_world, load_shard
from dsdistill.evaluate import evaluate
from dsdistill.synthesizers import Budget, create_synthesizer

SMALL = {"width": 8, "batch_real": 4}
METHODS = {"dm": {}, "datadam": {}, "ncfm": {"extractor": "random", "num_freqs": 16, "plateau_patience": 0,
                    "image_step": "per-iteration"},   # per-class steps couple the classes: no split
           "dm+noise": {"init": "noise"}}
# CV-DD: medium init, 2 IPC indices of 2 iterations each, the BN term over all classes. per-class: the bytes of
# one process; joint (the default): the same function, one batch per rank (CPU kernels may sum in another order)
CVDD = {"cvdd": {"class_batching": "per-class", "flip": True, "relabel": "stored", "candidates": 4},
        "cvdd+joint": {"candidates": 4}}


def main(root: str, out: str, committee: str) -> None:
    results = {}
    with init_world("cpu") as world:
        real = load_shard(world, "fashion-mnist", root)
        results["classes"] = world.all_gather(list(real.class_ids))
        results["train_labels"] = world.all_gather(sorted(set(real.train.labels.tolist())))
        fits = [(key, create_synthesizer(key.split("+")[0], **SMALL, **options), 3) for key, options in METHODS.items()]
        fits += [(key, create_synthesizer("cvdd", committee=committee, **options), 4) for key, options in CVDD.items()]
        for key, method, iterations in fits:
            synset = method.fit(real, 2, seed=3, budget=Budget(iterations=iterations), world=world)
            if world.is_main:
                results[key] = {"sha": synset.payload_sha256(), "loss": synset.extra["loss_curve"]["loss"]}
                if "joint" in key:
                    results[key]["images"] = synset.images.flatten().tolist()
            else:
                assert synset is None
        whole = load_dataset("fashion-mnist", root)  # every rank scores the same set
        synset = create_synthesizer("random").fit(whole, 2, seed=0)
        report = evaluate(synset, "smoke", archs=["convnet", "mlp", "lenet"], data=whole, device="cpu", world=world)
        results["report"] = [(r.arch, r.seeds, r.accuracies, r.path) for r in report.results]
    if world.is_main:
        with open(out, "w") as f:
            json.dump(results, f)


if __name__ == "__main__":
    main(*sys.argv[1:])
