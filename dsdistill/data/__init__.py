"""Real datasets: registry, native-format readers, in-memory splits with a per-class index, ZCA.

    data = load_dataset("fashion-mnist")            # searches --data-root, $DSDISTILL_DATA, ...
    x = data.train.sample_class(3, 10, make_generator(0, "init", 3))
"""
from . import datasets as _datasets  # noqa: F401  (fills DATASETS and DATASET_FAMILIES)
from .fakes import FAKES, write_fake
from .load import STATISTICS, dataset_status, load_dataset
from .spec import DATASET_FAMILIES, DATASETS, DatasetSpec, resolve_dataset
from .split import RealData, Split
from .zca import ZCA

__all__ = [
    "DATASETS", "DATASET_FAMILIES", "DatasetSpec", "FAKES", "RealData", "STATISTICS", "Split", "ZCA",
    "dataset_status", "load_dataset", "resolve_dataset", "write_fake",
]
