"""CV-DD's committee: member specs, build/resume, priors on a held-out split, loading checks, teachers, the CLI."""
import dataclasses

import pytest
import torch

import dsdistill.teachers as teachers
from dsdistill.cli import main
from dsdistill.teachers.committee import (DEFAULT_MEMBERS, MANIFEST, PRESETS, CommitteeRequest, build_committee,
                                          holdout_split, load_committee, load_teacher, parse_members, read_manifest)
from dsdistill.train.real import RealTrainConfig, real_recipe
from dsdistill.errors import CheckpointError, ConfigError
from dsdistill.evaluate import evaluate, get_protocol
from dsdistill.evaluate.soft import load_protocol_teacher
from dsdistill.synthesizers import create_synthesizer
from dsdistill.teachers.ensemble import prior_weights

from conftest import (TINY_COMMITTEE, build_tiny_committee, make_tiny_real, tiny_committee_config, tiny_committee_dir,
                      tiny_paper_committee_dir)

FAST = tiny_committee_config()
MEMBERS, EPOCHS = TINY_COMMITTEE["members"], TINY_COMMITTEE["epochs"]   # as the session's tiny_committee_dir()
TINY_KD = dataclasses.replace(get_protocol("kd"), name="tiny-kd", epochs=2, seeds=(0,), model_options=(("width", 8),))


def test_member_specs():
    a, b = parse_members("convnet-bn:width=8,resnet18-bn:per_class=100:epochs=2", 1)
    assert (a.name, a.epochs, a.per_class) == ("convnet-bn:width=8", 1, None)
    assert (b.name, b.epochs, b.per_class, b.file) == ("resnet18-bn:per_class=100", 2, 100,
                                                        "member-resnet18-bn_per_class-100.pt")
    with pytest.raises(ConfigError, match="twice"):
        parse_members("convnet-bn,convnet-bn:width=128", 1)
    with pytest.raises(ConfigError, match="unknown option"):
        parse_members("convnet-bn:colour=3", 1)
    with pytest.raises(ConfigError, match="at least one"):
        parse_members("", 1)


def test_member_without_batch_norm_is_refused_before_training(tiny_real, tmp_path):
    with pytest.raises(ConfigError, match="no BatchNorm.*convnet-bn"):
        build_tiny_committee(tiny_real, tmp_path / "c", "convnet-bn:width=8,convnet:width=8")
    assert not (tmp_path / "c").exists()


def test_holdout_is_disjoint_seeded_and_checked(tiny_real):
    rest, val = holdout_split(tiny_real, 3, 0)
    assert len(val) == 12 and all(len(r) == 9 for r in rest)
    train = set(torch.cat(rest).tolist())
    left = sorted(set(range(48)) - train)
    assert len(train) == 36 and len(left) == 12  # the members never see the validation images
    assert torch.allclose(val.images.sum(0), tiny_real.train.images[left].sum(0), atol=1e-4)
    assert torch.equal(holdout_split(tiny_real, 3, 0)[1].images, val.images)
    assert not torch.equal(holdout_split(tiny_real, 3, 1)[1].images, val.images)
    with pytest.raises(ConfigError, match="--holdout"):
        holdout_split(tiny_real, 12, 0)


def test_build_records_priors_hashes_and_loads(committee_dir, tiny_real):
    manifest = read_manifest(committee_dir)
    names = [m["name"] for m in manifest["members"]]
    assert names == ["convnet-bn:width=8", "convnet-bn:depth=2:width=8"]  # options in canonical order
    for m in manifest["members"]:
        assert m["prior"] == pytest.approx(100 * m["val_accuracy"]) and 0 <= m["test_accuracy"] <= 1
        assert m["train_images"] == 4 * 10 and len(m["sha256"]) == 64 and m["bytes"] > 0
    committee = load_committee(committee_dir, tiny_real)
    assert committee.names == names and all(not m.model.training for m in committee.members)
    teacher = load_teacher(committee_dir, tiny_real, temperature=10.0)
    assert torch.allclose(teacher.weights, prior_weights([m["prior"] for m in manifest["members"]], 10.0))
    assert teacher.checkpoint_bytes == sum(m["bytes"] for m in manifest["members"])
    single = load_teacher(committee_dir / manifest["members"][0]["file"], tiny_real)
    assert single.weights.tolist() == [1.0] and single.sha256 == [manifest["members"][0]["sha256"]]


def test_resume_keeps_finished_members_and_adds_new_ones(committee_dir, tiny_real, monkeypatch):
    before = read_manifest(committee_dir)["members"]
    import dsdistill.teachers.committee as mod
    calls = []
    original = mod.train_on_real
    monkeypatch.setattr(mod, "train_on_real", lambda *a, **k: calls.append(k["desc"]) or original(*a, **k))
    build_tiny_committee(tiny_real, committee_dir, MEMBERS + ",convnet-bn:width=4")
    after = read_manifest(committee_dir)["members"]
    assert calls == ["convnet-bn:width=4"] and after[:2] == before and after[2]["name"] == "convnet-bn:width=4"
    with pytest.raises(ConfigError, match="already holds a committee with seed 0, not 1"):
        build_tiny_committee(tiny_real, committee_dir, seed=1)
    with pytest.raises(ConfigError, match="trained differently"):
        build_committee(tiny_real, committee_dir, parse_members(MEMBERS, 4), holdout=2, config=FAST)


def test_same_seed_same_member(tiny_real, tmp_path):
    a = read_manifest(build_tiny_committee(tiny_real, tmp_path / "a", "convnet-bn:width=8"))["members"][0]
    b = read_manifest(build_tiny_committee(tiny_real, tmp_path / "b",
                                           "convnet:norm=batch:width=8:depth=2,convnet-bn:width=8"))
    assert a["sha256"] == b["members"][1]["sha256"]  # a member does not depend on the others or the order


def test_missing_or_mismatched_checkpoints_are_clear(committee_dir, tiny_real):
    manifest = read_manifest(committee_dir)
    first = committee_dir / manifest["members"][0]["file"]
    blob = torch.load(first, weights_only=True)
    blob["state_dict"]["classifier.bias"] += 1.0  # other weights than the ones trained
    torch.save(blob, first)
    with pytest.raises(CheckpointError, match="does not match its recorded sha256"):
        load_committee(committee_dir, tiny_real)
    first.write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="unreadable"):
        load_committee(committee_dir, tiny_real)
    first.unlink()
    with pytest.raises(CheckpointError, match="is missing; rerun"):
        load_committee(committee_dir, tiny_real)
    with pytest.raises(CheckpointError, match="no committee folder"):
        load_committee(committee_dir / "nope", tiny_real)
    other = make_tiny_real(name="mnist")
    with pytest.raises(CheckpointError, match="does not fit this run: dataset fashion-mnist, not mnist"):
        load_committee(committee_dir, other)
    (committee_dir / MANIFEST).write_text("{")
    with pytest.raises(CheckpointError, match="damaged"):
        load_committee(committee_dir, tiny_real)


def test_a_set_names_its_teacher_by_hash(committee_dir, tiny_real):
    synset = create_synthesizer("random").fit(tiny_real, 2, seed=0)
    committee = load_committee(committee_dir, tiny_real)
    synset.extra["teacher"] = committee.select(committee.names[:1]).record(weights=[1.0]) | {"mode": "online"}
    report = evaluate(synset, TINY_KD, data=tiny_real, device="cpu")
    assert report.label_source == "online" and report.teacher_bytes == committee.members[0].bytes
    assert "sha256 checked" in " ".join(report.notes)
    synset.extra["teacher"]["members"][0]["sha256"] = "0" * 64
    with pytest.raises(CheckpointError, match="not the checkpoint the set was made with"):
        evaluate(synset, TINY_KD, data=tiny_real, device="cpu")
    # a random set scored with a committee given explicitly
    plain = create_synthesizer("random").fit(tiny_real, 2, seed=0)
    report = evaluate(plain, TINY_KD, data=tiny_real, device="cpu", teacher=str(committee_dir))
    assert report.label_source == "online" and len(report.results[0].accuracies) == 1


def test_committee_and_evaluate_cli(fake_fmnist_root, tmp_path, capsys):
    out = tmp_path / "c"
    code = main(["committee", "--members", "convnet-bn:width=8", "--epochs", "1", "--holdout", "1", "--out", str(out),
                 "--data-root", fake_fmnist_root, "--device", "cpu"])
    text = capsys.readouterr().out
    assert code == 0 and "convnet-bn:width=8" in text and "prior" in text and (out / MANIFEST).is_file()
    assert main(["committee", "--members", "convnet", "--out", str(tmp_path / "d"), "--data-root", fake_fmnist_root,
                 "--device", "cpu"]) == 2
    assert "no BatchNorm" in capsys.readouterr().err
    random_set = tmp_path / "r.h5"
    assert main(["select", "--method", "random", "--ipc", "1", "--out", str(random_set), "--data-root",
                 fake_fmnist_root, "--device", "cpu"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(random_set), "--protocol", "kd-quick", "--data-root", fake_fmnist_root]) == 2
    assert "--teacher" in capsys.readouterr().err
    assert main(["evaluate", str(random_set), "--protocol", "dc", "--teacher", str(out),
                 "--data-root", fake_fmnist_root]) == 2
    assert "soft-label protocols" in capsys.readouterr().err
    assert main(["evaluate", str(random_set), "--protocol", "kd", "--teacher", str(tmp_path / "none"),
                 "--data-root", fake_fmnist_root]) == 2
    assert "no committee folder" in capsys.readouterr().err
    labelled = tmp_path / "labelled.h5"
    assert main(["relabel", str(random_set), "--teacher", str(out), "--mode", "stored", "--out", str(labelled),
                 "--data-root", fake_fmnist_root, "--device", "cpu"]) == 0
    assert "soft labels stored (400 bytes)" in capsys.readouterr().out
    assert main(["info", str(labelled)]) == 0 and "stored, teacher" in capsys.readouterr().out


def test_load_teacher_is_the_one_way_to_a_teacher(tiny_real):
    """A Teacher passes as it is, any other model becomes a one-member ensemble of weight 1 in the asked BN mode,
    a committee folder the prior-weighted ensemble; the evaluator's soft labels get theirs the same way."""
    assert teachers.load_teacher is load_teacher
    folder = tiny_committee_dir()
    committee = load_teacher(folder, tiny_real)
    assert load_teacher(committee, tiny_real) is committee
    model = load_committee(folder, tiny_real).members[0].model
    single = load_teacher(model, tiny_real, bn_mode="eval")
    assert isinstance(single, teachers.Teacher) and single.weights.tolist() == [1.0] and single.bn_mode == "eval"
    assert single.members[0] is model
    x = tiny_real.test.images[:6]
    for given in (folder, committee):
        teacher = load_protocol_teacher(given, tiny_real, torch.device("cpu"), TINY_KD)
        assert teacher.sha256 == committee.sha256 and torch.equal(teacher(x), committee(x))
    assert load_protocol_teacher(model, tiny_real, torch.device("cpu"), TINY_KD).bn_mode == "train"


# ---------------------------------------------------------------- presets: the CPU default and CV-DD's squeeze
PAPER_NAMES = ["tv-resnet18", "tv-resnet50", "tv-shufflenetv2-0.5", "tv-mobilenetv2", "tv-densenet121"]


def test_paper_preset_is_cvdd_squeeze():
    """Reference A1 and the official squeeze (squeeze.py, scripts/squeeze_cifar10.sh): the five CIFAR-style nets in
    the order of CV-DD's priors, 200 epochs of Adam 1e-3 (wd 1e-4, batch 512), cosine to 0, RandomCrop(pad 4) + flip
    and plain cross-entropy; Tiny-ImageNet: SGD 0.01 (momentum 0.9, batch 128), 50 epochs."""
    paper = PRESETS["paper"]
    assert paper.members.split(",") == PAPER_NAMES and paper.epochs == 200
    t = paper.train
    assert (t.optimizer, t.lr, t.weight_decay, t.batch_size, t.schedule) == ("adam", 1e-3, 1e-4, 512, "cosine")
    assert (t.crop_flip, t.dsa, t.cutmix_prob) == (4, False, 0.0)
    recipe = real_recipe(t, paper.epochs)
    assert recipe.optimizer == "adam" and [recipe.schedule.lr(1e-3, e, 200) for e in (0, 100)] == \
        pytest.approx([1e-3, 5e-4])
    tiny = PRESETS["paper-tiny-imagenet"]
    assert tiny.members == paper.members and tiny.epochs == 50
    assert (tiny.train.optimizer, tiny.train.lr, tiny.train.momentum, tiny.train.weight_decay,
            tiny.train.batch_size, tiny.train.schedule, tiny.train.crop_flip) == ("sgd", 0.01, 0.9, 1e-4, 128,
                                                                                  "cosine", 4)


def test_the_cpu_preset_is_the_default_and_parts_can_be_overridden(tmp_path):
    plain = CommitteeRequest(out=str(tmp_path / "c"))
    assert plain.preset == "cpu" and plain.config() == RealTrainConfig()
    assert [s.name for s in plain.specs()] == DEFAULT_MEMBERS.split(",") and {s.epochs for s in plain.specs()} == {1}
    # what a committee built before the presets recorded: the new training options stay out at their old value
    assert set(plain.config().identity()) == {"lr", "momentum", "weight_decay", "batch_size", "milestones", "gamma",
                                              "dsa", "dsa_strategy", "cutmix_prob"}
    custom = CommitteeRequest(out=str(tmp_path / "c"), preset="paper", members="tv-resnet18", epochs=3,
                              train=("batch_size=64", "schedule=multistep"))
    assert [(s.name, s.epochs) for s in custom.specs()] == [("tv-resnet18", 3)]
    assert (custom.config().batch_size, custom.config().schedule, custom.config().optimizer) == (64, "multistep",
                                                                                                  "adam")
    assert "preset paper" in custom.describe()
    with pytest.raises(ConfigError, match="unknown committee preset 'big'; valid: cpu, paper"):
        CommitteeRequest(out=str(tmp_path / "c"), preset="big")
    with pytest.raises(ConfigError, match="schedule must be one of multistep, cosine"):
        CommitteeRequest(out=str(tmp_path / "c"), train=("schedule=linear",))


def test_the_paper_committee_builds_from_its_preset():
    """CV-DD's five train with its recipe (1 epoch here) into a committee in its order, the recipe recorded."""
    manifest = read_manifest(tiny_paper_committee_dir())
    assert [m["name"] for m in manifest["members"]] == PAPER_NAMES
    assert manifest["train_config"] == PRESETS["paper"].train.identity()
    assert {m["identity"]["epochs"] for m in manifest["members"]} == {1}
    assert all(m["train_images"] == 4 * 3 for m in manifest["members"])


def test_committee_cli_takes_a_preset_and_overrides_its_parts(fake_fmnist_root, tmp_path, capsys):
    out = tmp_path / "c"
    assert main(["committee", "--preset", "paper", "--members", "tv-shufflenetv2-0.5", "--epochs", "1", "--train",
                 "batch_size=32", "--holdout", "1", "--out", str(out), "--data-root", fake_fmnist_root,
                 "--device", "cpu", "--quiet"]) == 0
    assert "preset paper" in capsys.readouterr().out
    manifest = read_manifest(out)
    assert [m["name"] for m in manifest["members"]] == ["tv-shufflenetv2-0.5"]
    assert manifest["train_config"] == {**PRESETS["paper"].train.identity(), "batch_size": 32}
    assert "--preset paper" in manifest["command"]
