"""Synthetic sets: the checked HDF5 file every synthesizer writes and the evaluator reads."""
from dsdistill.synset.format import FORMAT, FORMAT_VERSION, IMAGE_SPACES, SyntheticSet
from dsdistill.synset.grid import save_grid
from dsdistill.synset.importers import import_set

__all__ = ["FORMAT", "FORMAT_VERSION", "IMAGE_SPACES", "SyntheticSet", "import_set", "save_grid"]
