"""A pool of models trained on the real data, each kept as (random init, trained weights): NCFM's feature
extractor is lam * init + (1 - lam) * trained of a random pool member (DANCE-style interpolation).

NCFM's official pool (pretrain/pretrain_script.py) is 20 ConvNets x 60 epochs per dataset (80 for the ImageNet
subsets). Our CLI default is smaller (DEFAULT_MODELS x DEFAULT_EPOCHS) so that it finishes in about ten minutes on
2 CPU cores for Fashion-MNIST (one epoch of ConvNet-3 on the 60000 images is about 3-4 minutes there, scaled from
a run under load; one such model reaches about 86% test accuracy); pass --models 20 --epochs 60 for the official size.

Layout of a pool folder:
    pool.json        manifest: format, version, identity (dataset, zca, arch, model_options, epochs, seed,
                     train_config), provenance, and `models` = the FINISHED models only
    model-000.pt     {"init": state_dict, "trained": state_dict}, CPU tensors, read with weights_only=True
Building is resumable per model (dsdistill.teachers.folder): every file is written atomically and the manifest is
rewritten after each model.
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import torch
from torch import Tensor

from .._config import parse_overrides
from .._seed import derive_seed, seeded_init
from ..data import RealData
from ..errors import CheckpointError, ConfigError
from .folder import FolderBuild, FolderKind, finished_entries, read_manifest as _read_manifest
from ..models import create_model, model_options as arch_options
from ..train.real import RealTrainConfig, test_accuracy, train_on_real

FORMAT = "dsdistill-pool"
VERSION = 1
MANIFEST = "pool.json"
DEFAULT_MODELS = 3  # ours: CPU-sized (official: 20), about 10 minutes for Fashion-MNIST on 2 cores
DEFAULT_EPOCHS = 1  # ours: CPU-sized (official: 60 for CIFAR/TinyImageNet, 80 for the ImageNet subsets)
OFFICIAL_MODELS = 20  # NCFM official pretrain/pretrain_script.py: model_num
OFFICIAL_EPOCHS = 60  # NCFM official configs: pertrain_epochs (CIFAR-10/100, TinyImageNet)
StateDict = dict[str, Tensor]


def model_file(index: int) -> str:
    return f"model-{index:03d}.pt"


def resolved_options(arch: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """All of the model's options with the given ones applied, so {} and {"width": 128} name the same pool."""
    defaults = arch_options(arch)
    given = {k: v for k, v in (options or {}).items() if v is not None}
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)} for model {arch!r}; "
                          f"valid: {', '.join(defaults) or '(none)'}")
    return {**defaults, **given}


def parse_model_options(arch: str, pairs: Iterable[str]) -> dict[str, Any]:
    """--set key=value pairs -> model options, typed by each option's default (width=8 -> 8)."""
    fields = [(name, type(default) if default is not None else str) for name, default in arch_options(arch).items()]
    spec = dataclasses.make_dataclass(f"{arch} model options", fields)
    return parse_overrides(spec, pairs)


def pool_command(dataset: str, zca: bool, arch: str, options: Mapping[str, Any], *, models: int = DEFAULT_MODELS,
                 epochs: int = DEFAULT_EPOCHS, out: str = "DIR") -> str:
    """The `dsdistill pool` command that builds a pool of this identity (for error messages)."""
    parts = ["dsdistill pool", f"--dataset {dataset}", f"--models {models}", f"--epochs {epochs}"]
    if arch != "convnet":
        parts.append(f"--arch {arch}")
    defaults = arch_options(arch)
    parts += [f"--set {k}={v}" for k, v in options.items() if defaults.get(k) != v]
    if zca:
        parts.append("--zca")
    return " ".join(parts + [f"--out {out}"])


def _identity(real: RealData, arch: str, options: Mapping[str, Any], epochs: int | None = None,
              seed: int | None = None, config: RealTrainConfig | None = None) -> dict[str, Any]:
    """What makes two pools the same, as it reads back from JSON (tuples become lists)."""
    ident: dict[str, Any] = {"dataset": real.name, "zca": real.zca is not None, "arch": arch,
                             "model_options": dict(options)}
    if epochs is not None:
        ident.update(epochs=epochs, seed=seed, train_config=dataclasses.asdict(config))
    return json.loads(json.dumps(ident))


def _describe(key: str, value: Any, only: Iterable[str] = ()) -> str:
    """One identity field in words; for option dicts only the keys in `only` (those that differ)."""
    if key == "zca":
        return "with ZCA" if value else "without ZCA"
    if key == "arch":
        return f"arch {value}"
    if isinstance(value, dict):
        label = "model options" if key == "model_options" else key.replace("_", " ")
        return f"{label} " + ", ".join(f"{k}={value.get(k, '(unset)')}" for k in sorted(only))
    if key == "epochs":
        return f"{value} epochs"
    if key == "seed":
        return f"seed {value}"
    return str(value)


def _differences(manifest: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """['built for mnist, not fashion-mnist', ...] for each identity field that differs."""
    out = []
    for key, value in wanted.items():
        have = manifest.get(key)
        if have == value or (key == "model_options" and manifest.get("arch") != wanted.get("arch")):
            continue  # the options of another architecture say nothing more
        only = ({k for k in {*have, *value} if have.get(k) != value.get(k)}
                if isinstance(have, dict) and isinstance(value, dict) else ())
        word = {"dataset": "for ", "arch": "for ", "zca": ""}.get(key, "with ")
        out.append(f"built {word}{_describe(key, have, only)}, not {_describe(key, value, only)}")
    return out


KIND = FolderKind(noun="pool", article="a pool", unit="model", holds="a pool", manifest=MANIFEST, format=FORMAT,
                  version=VERSION, entries="models",
                  required=("dataset", "zca", "arch", "model_options", "epochs", "seed", "train_config"),
                  differences=_differences)


def read_manifest(path: str | Path, hint: str = "") -> dict[str, Any]:
    """The manifest of the pool folder `path`; CheckpointError when missing or damaged, naming `hint` (the
    command that builds the pool) when given."""
    return _read_manifest(KIND, path, hint)


def _load_model_file(path: Path, device: str | torch.device, hint: str) -> tuple[StateDict, StateDict]:
    if not path.is_file():
        raise CheckpointError(f"the pool is incomplete: {path} is missing; rerun `{hint}` to retrain it "
                              f"(building resumes)")
    try:
        blob = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # torch raises many types for a truncated or foreign file
        raise CheckpointError(f"the pool is incomplete: {path} is unreadable ({type(err).__name__}); delete it "
                              f"and rerun `{hint}` to retrain it") from None
    if not isinstance(blob, dict) or not isinstance(blob.get("init"), dict) or not isinstance(blob.get("trained"), dict):
        raise CheckpointError(f"{path} is not a pool model file (needs 'init' and 'trained'); delete it and rerun "
                              f"`{hint}`")
    return blob["init"], blob["trained"]


@dataclass
class Pool:
    """A loaded pool: the manifest's fields plus every model's init and trained weights."""

    path: Path
    dataset: str
    zca: bool
    arch: str
    model_options: dict[str, Any]
    epochs: int
    seed: int
    train_config: dict[str, Any]
    created_utc: str
    dsdistill_version: str
    command: str
    models: list[dict[str, Any]]
    inits: list[StateDict] = field(repr=False)
    trained: list[StateDict] = field(repr=False)
    accuracies: list[float] = field(default_factory=list)
    format: str = FORMAT
    version: int = VERSION

    def __len__(self) -> int:
        return len(self.trained)

    def _check(self, index: int) -> None:
        if not 0 <= index < len(self):
            raise ConfigError(f"pool model {index} does not exist; the pool at {self.path} has {len(self)} models")

    def trained_state(self, index: int) -> StateDict:
        """Model `index` after training (NCFM's "model_final", also the calibration model)."""
        self._check(index)
        return self.trained[index]

    def interpolated(self, index: int, lam: float) -> StateDict:
        """lam * init + (1 - lam) * trained for floating tensors; integer buffers (BN's step count) from trained.
        lam = 1 is the random init, lam = 0 the trained model (NCFM draws lam ~ U(0, 1) per iteration)."""
        self._check(index)
        init, trained = self.inits[index], self.trained[index]
        return {k: torch.lerp(v, init[k], lam) if v.is_floating_point() else v for k, v in trained.items()}


def load_pool(path: str | Path, real: RealData, arch: str = "convnet",
              model_options: Mapping[str, Any] | None = None, device: str | torch.device = "cpu") -> Pool:
    """Read the pool at `path` and check that it was built for `real` (dataset, ZCA), `arch` and its options."""
    options = resolved_options(arch, model_options)
    hint = pool_command(real.name, real.zca is not None, arch, options, out=str(path))
    manifest = read_manifest(path, hint)
    diffs = _differences(manifest, _identity(real, arch, options))
    other = pool_command(real.name, real.zca is not None, arch, options)  # --out DIR: this folder is taken
    if diffs:
        raise CheckpointError(f"the pool at {path} was {'; '.join(diffs)}; build a matching one with `{other}`")
    entries = finished_entries(KIND, path, manifest, hint)
    folder = Path(path)
    resume = manifest.get("command") or pool_command(real.name, real.zca is not None, arch, options,
                                                     models=len(entries), epochs=manifest["epochs"], out=str(path))
    expected = {k: tuple(v.shape) for k, v in _new_model(arch, real, options).state_dict().items()}
    inits, trained = [], []
    for entry in entries:
        init, final = _load_model_file(folder / entry["file"], device, resume)
        for state in (init, final):
            if {k: tuple(v.shape) for k, v in state.items()} != expected:
                raise CheckpointError(f"{folder / entry['file']} does not fit a {arch} for {real.name} "
                                      f"({real.channels}x{real.image_size}x{real.image_size}, {real.num_classes} "
                                      f"classes); build a matching pool with `{other}`")
        inits.append(init)
        trained.append(final)
    return Pool(path=folder, dataset=manifest["dataset"], zca=manifest["zca"], arch=manifest["arch"],
                model_options=manifest["model_options"], epochs=manifest["epochs"], seed=manifest["seed"],
                train_config=manifest["train_config"], created_utc=manifest.get("created_utc", ""),
                dsdistill_version=manifest.get("dsdistill_version", ""), command=manifest.get("command", ""),
                models=entries, inits=inits, trained=trained,
                accuracies=[float(m["test_accuracy"]) for m in entries])


def _new_model(arch: str, real: RealData, options: Mapping[str, Any]) -> torch.nn.Module:
    """A model for `real`; module constructors draw from the global RNG, so they run on a fork of it (every
    weight that matters is then set by seeded_init or a state dict)."""
    with torch.random.fork_rng(devices=[]):
        return create_model(arch, real.channels, real.num_classes, real.image_size, **options)


def _cpu_state(model: torch.nn.Module) -> StateDict:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def build_pool(real: RealData, out: str | Path, *, models: int, epochs: int, arch: str = "convnet",
               model_options: Mapping[str, Any] | None = None, seed: int = 0,
               config: RealTrainConfig = RealTrainConfig(), command: str = "",
               on_model: Callable[[dict[str, Any]], None] | None = None) -> Path:
    """Train `models` models on real.train for `epochs` epochs each and store them in the folder `out`.

    Resumable: models already listed in out/pool.json (same identity) are kept, the rest trained. Model i is
    initialised and trained from seeds derived from (seed, "pool", i), so a model does not depend on how many
    were asked for or on interruptions. `on_model(entry)` runs after each newly trained model.
    """
    if models < 1 or epochs < 1:
        raise ConfigError(f"need --models >= 1 and --epochs >= 1, got {models} and {epochs}")
    options = resolved_options(arch, model_options)
    build = FolderBuild(KIND, out, _identity(real, arch, options, epochs, seed, config), command=command,
                        keep=lambda path, _: _load_model_file(path, "cpu", "") is not None,  # it still loads
                        on_unit=on_model)
    device = real.train.images.device
    for i in build.missing(range(models)):
        model_seed = derive_seed(seed, "pool", i)
        model = seeded_init(_new_model(arch, real, options), model_seed, "init").to(device)
        init = _cpu_state(model)
        start = time.perf_counter()
        train_on_real(model, real.train, config, model_seed, epochs, digits=real.digits,
                      desc=f"model {i + 1}/{models}")
        seconds = time.perf_counter() - start
        entry = {"file": model_file(i), "index": i, "test_accuracy": test_accuracy(model, real.test),
                 "seconds": round(seconds, 3)}
        build.save(entry["file"], {"init": init, "trained": _cpu_state(model)})
        build.finish(entry)
    return build.folder
