"""Synthetic sets: the checked HDF5 file every synthesizer writes and the evaluator reads."""
from .set import FORMAT, FORMAT_VERSION, IMAGE_SPACES, SyntheticSet
from .grid import save_grid
from .importers import import_set

__all__ = ["FORMAT", "FORMAT_VERSION", "IMAGE_SPACES", "SyntheticSet", "import_set", "save_grid"]
