"""The package version, apart from the package root so that importing it loads nothing else."""
__version__ = "0.1.0"
