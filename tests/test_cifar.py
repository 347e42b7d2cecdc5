"""CIFAR-10 pieces: the python-version reader on a synthetic archive, ResNet-18 / VGG-19, and the augmentation."""

import copy
import hashlib
import pickle
import tarfile

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from cifar_fixture import FOLDER, TRAIN_BATCHES, synthetic_batches, write_cifar10_archive
from ibci import data
from ibci.data import CIFAR10_MEAN, CIFAR10_STD, load_cifar10
from ibci.errors import DataError, UserError
from ibci.nets.zoo import LOGITS, official_init_, resnet18, vgg19
from ibci.train.augment import crop_flip, normalize

N_TRAIN, N_TEST, SEED = 4, 3, 0


@pytest.fixture
def archive(tmp_path):
    return write_cifar10_archive(tmp_path / "cifar-10-python.tar.gz", N_TRAIN, N_TEST, SEED)


@pytest.fixture
def extracted(archive, tmp_path):
    """The folder holding cifar-10-batches-py/, as `tar xzf` leaves it."""
    root = tmp_path / "root"
    with tarfile.open(archive) as tar:
        tar.extractall(root, filter="data")
    return root


def one_line_error(match: str, fn, *args, **kwargs) -> str:
    with pytest.raises(DataError, match=match) as e:
        fn(*args, **kwargs)
    assert isinstance(e.value, UserError) and "\n" not in str(e.value)
    return str(e.value)


# --- the reader ------------------------------------------------------------------------------------------------


def test_reads_the_archive_as_written(archive):
    files = synthetic_batches(N_TRAIN, N_TEST, SEED)
    got = load_cifar10(archive, verify=False)
    x_train = np.concatenate([files[b][b"data"] for b in TRAIN_BATCHES])
    y_train = sum((files[b][b"labels"] for b in TRAIN_BATCHES), [])
    assert got.x_train.shape == (5 * N_TRAIN, 3072) and got.x_test.shape == (N_TEST, 3072)
    assert got.x_train.dtype == got.x_test.dtype == torch.float32
    assert got.y_train.dtype == got.y_test.dtype == torch.int64
    assert 0 <= got.x_train.min() and got.x_train.max() <= 1
    # Rows keep the archive's own order (R, G, B planes), byte / 255, training batches 1 to 5 in turn.
    assert torch.equal(got.x_train, torch.from_numpy(x_train).float() / 255)
    assert got.y_train.tolist() == y_train
    assert torch.equal(got.x_test, torch.from_numpy(files["test_batch"][b"data"]).float() / 255)
    assert got.y_test.tolist() == files["test_batch"][b"labels"]


def test_tar_and_folders_give_identical_tensors(archive, extracted):
    ref = load_cifar10(archive, verify=False)
    for path in (extracted, extracted / FOLDER, str(extracted / FOLDER)):
        got = load_cifar10(path, verify=False)
        for field in ("x_train", "y_train", "x_test", "y_test"):
            assert torch.equal(getattr(got, field), getattr(ref, field)), (path, field)


def test_missing_files_are_one_line_errors(archive, extracted, tmp_path):
    (extracted / FOLDER / "data_batch_3").unlink()
    msg = one_line_error("has no data_batch_3", load_cifar10, extracted, verify=False)
    assert str(extracted / FOLDER) in msg
    one_line_error("does not exist", load_cifar10, tmp_path / "nowhere", verify=False)

    partial = tmp_path / "partial.tar.gz"
    with tarfile.open(archive) as src, tarfile.open(partial, "w:gz") as dst:
        for m in src.getmembers():
            if not m.name.endswith("test_batch"):
                dst.addfile(m, src.extractfile(m) if m.isfile() else None)
    one_line_error(f"{partial} has no file {FOLDER}/test_batch", load_cifar10, partial, verify=False)

    not_gz = tmp_path / "plain.tar.gz"
    not_gz.write_bytes(b"not an archive")
    one_line_error("cannot read .* as a .tar.gz archive", load_cifar10, not_gz, verify=False)


def test_damaged_batches_are_one_line_errors(extracted):
    batch = extracted / FOLDER / "data_batch_2"
    good = batch.read_bytes()
    batch.write_bytes(good[: len(good) // 2])
    msg = one_line_error("cannot unpickle", load_cifar10, extracted, verify=False)
    assert str(batch) in msg

    for content, match in [
        ({b"data": np.zeros((4, 100), np.uint8), b"labels": [0] * 4}, r"uint8 \[4, 100\]"),
        ({b"data": np.zeros((4, 3072), np.float32), b"labels": [0] * 4}, "float32"),
        ({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0] * 3}, "3 labels .* for 4 images"),
        ({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 10]}, "labels from 0 to 10"),
        ({b"labels": [0]}, "expected a dict with b'data' and b'labels'"),
    ]:
        batch.write_bytes(pickle.dumps(content, protocol=2))
        assert str(batch) in one_line_error(match, load_cifar10, extracted, verify=False)


def test_a_pickle_that_runs_code_is_refused(extracted):
    class Evil:
        def __reduce__(self):
            return (print, ("ran",))

    (extracted / FOLDER / "test_batch").write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    one_line_error("asks for __builtin__.print", load_cifar10, extracted, verify=False)


def test_verify_refuses_a_copy_that_is_not_the_official_one(archive, extracted, monkeypatch):
    one_line_error("not the official cifar-10-python.tar.gz .*c58f30108f718f92721af3b95e74349a", load_cifar10, archive)
    one_line_error("batches.meta is not the official CIFAR-10 batches.meta", load_cifar10, extracted)

    # Each member is checked too, once the archive's digest passes.
    monkeypatch.setattr(data, "CIFAR10_ARCHIVE_MD5", data.md5(archive))
    one_line_error(f"{archive}:{FOLDER}/batches.meta is not the official", load_cifar10, archive)

    # With every digest that of the synthetic files, verification passes.
    def digest(name):
        return hashlib.md5((extracted / FOLDER / name).read_bytes()).hexdigest()

    for table in ("CIFAR10_TRAIN_MD5", "CIFAR10_TEST_MD5", "CIFAR10_META_MD5"):
        monkeypatch.setattr(data, table, {name: digest(name) for name in getattr(data, table)})
    assert torch.equal(load_cifar10(archive).x_train, load_cifar10(extracted).x_train)
    monkeypatch.setitem(data.CIFAR10_TRAIN_MD5, "data_batch_4", "0" * 32)
    one_line_error("data_batch_4 is not the official CIFAR-10 data_batch_4", load_cifar10, extracted)


def test_constants():
    assert data.CIFAR10_MEAN == (0.491, 0.482, 0.446) and data.CIFAR10_STD == (0.247, 0.243, 0.261)
    assert len(data.CIFAR10_TRAIN_MD5) == 5 and set(data.CIFAR10_TEST_MD5) == {"test_batch"}


# --- the networks ----------------------------------------------------------------------------------------------


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    return {"resnet18": [resnet18() for _ in range(2)], "vgg19": [vgg19() for _ in range(2)]}


def test_parameter_counts(nets):
    assert n_params(nets["resnet18"][0]) == 11_173_962  # the CIFAR ResNet-18's
    assert n_params(resnet18(dropout=0, stem_relu=True)) == 11_173_962
    # VGG-19 as the official VGG19.py builds it, by hand: 16 bias-free 3x3 convs, a BatchNorm (2 per channel)
    # after each, then 2048 -> 4096 -> 4096 -> 10.
    widths = [3, 64, 64, 128, 128, *[256] * 4, *[512] * 8]
    convs = sum(9 * a * b for a, b in zip(widths[:-1], widths[1:]))
    bns = 2 * sum(widths[1:])
    fcs = 2048 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 10 + 10
    assert n_params(nets["vgg19"][0]) == convs + bns + fcs == 45_244_874
    assert n_params(resnet18(num_classes=100, in_channels=1)) == 11_173_962 - 2 * 9 * 64 + 90 * 512 + 90


@pytest.mark.parametrize("name", ["resnet18", "vgg19"])
def test_logits_and_vmap_over_copies(nets, name):
    models = [m.eval() for m in nets[name]]
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        own = torch.stack([m(x) for m in models])
    assert own.shape == (2, 2, 10) and not torch.allclose(own[0], own[1])

    seen = []
    last = models[0].get_submodule(LOGITS)
    assert isinstance(last, nn.Linear) and last.out_features == 10
    handle = last.register_forward_hook(lambda m, i, o: seen.append(o))
    with torch.no_grad():
        models[0](x)
    handle.remove()
    assert torch.equal(seen[0], own[0])

    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    with torch.no_grad():
        stacked = vmap(lambda p, b, xs: functional_call(base, (p, b), (xs,)), in_dims=(0, 0, None))(params, buffers, x)
    torch.testing.assert_close(stacked, own, rtol=1e-4, atol=1e-4)


def test_training_mode_under_vmap_updates_each_copys_statistics():
    # Without dropout the training step is deterministic, so the stack must match each copy run alone.
    torch.manual_seed(2)
    models = [resnet18(dropout=0) for _ in range(2)]
    x = torch.randn(2, 4, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    stacked = vmap(lambda p, b, xs: functional_call(base, (p, b), (xs,)), randomness="different")(params, buffers, x)
    for s, m in enumerate(models):
        torch.testing.assert_close(stacked[s], m(x[s]), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(buffers["bn1.running_mean"][s], m.bn1.running_mean)
    # With dropout it runs too, under randomness="different".
    params, buffers = stack_module_state([resnet18(), resnet18()])
    out = vmap(lambda p, b, xs: functional_call(base, (p, b), (xs,)), randomness="different")(params, buffers, x)
    assert out.shape == (2, 4, 10)


def test_official_init():
    m = official_init_(resnet18(num_classes=10))
    assert torch.all(m.logits.bias == 0)
    w = m.blocks[7].conv2.weight  # 512 x 512 x 3 x 3: kaiming normal, std sqrt(2 / fan_in)
    assert abs(w.std().item() / (2 / (512 * 9)) ** 0.5 - 1) < 0.02


# --- the augmentation ------------------------------------------------------------------------------------------


def gens(*seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def test_crop_flip_is_the_padded_crop_at_the_drawn_offsets():
    x = torch.rand(2, 50, 3, 8, 6, generator=torch.Generator().manual_seed(0))
    p = 3
    out = crop_flip(x, gens(10, 11), padding=p)
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (p, p, p, p))
    for s, seed in enumerate((10, 11)):
        g = torch.Generator().manual_seed(seed)  # replays the documented draws
        dy, dx = torch.randint(0, 2 * p + 1, (50,), generator=g), torch.randint(0, 2 * p + 1, (50,), generator=g)
        flip = torch.rand(50, generator=g) < 0.5
        assert set(dy.tolist()) | set(dx.tolist()) <= set(range(2 * p + 1))
        for b in range(50):
            crop = padded[s, b, :, dy[b] : dy[b] + 8, dx[b] : dx[b] + 6]
            assert torch.equal(out[s, b], crop.flip(-1) if flip[b] else crop)


def test_crop_flip_seeds():
    x = torch.rand(1, 16, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.equal(crop_flip(x, gens(5)), crop_flip(x, gens(5)))
    assert not torch.equal(crop_flip(x, gens(5)), crop_flip(x, gens(6)))
    # A model's augmentations do not depend on the others in the stack.
    two = crop_flip(x.expand(2, -1, -1, -1, -1), gens(5, 6))
    assert torch.equal(two[0], crop_flip(x, gens(5))[0]) and not torch.equal(two[0], two[1])


def test_flip_probability_is_a_half():
    # No padding: each output is its image or its mirror, told apart by a ramp along the width.
    n = 4000
    x = torch.arange(4.0).expand(1, n, 1, 1, 4)
    out = crop_flip(x, gens(0), padding=0)
    flipped = (out[0, :, 0, 0, 0] == 3).float()
    assert torch.equal(out[0, flipped == 1], x[0, flipped == 1].flip(-1))
    assert torch.equal(out[0, flipped == 0], x[0, flipped == 0])
    assert abs(flipped.mean().item() - 0.5) < 0.03  # 4 standard errors


def test_padding_is_zero():
    x = torch.ones(1, 400, 1, 4, 4)
    out = crop_flip(x, gens(1), padding=2)
    # Offset 0 in both directions shows the corner of the zero padding.
    assert out.min() == 0 and out.max() == 1 and set(out.unique().tolist()) == {0.0, 1.0}
    with pytest.raises(ValueError, match="2 generators for a stack of 1"):
        crop_flip(x, gens(1, 2))


def test_normalize():
    x = torch.rand(2, 5, 3, 4, 4)
    got = normalize(x, CIFAR10_MEAN, CIFAR10_STD)
    for c in range(3):
        torch.testing.assert_close(got[:, :, c], (x[:, :, c] - CIFAR10_MEAN[c]) / CIFAR10_STD[c])


# --- the suite on CIFAR-10 ------------------------------------------------------------------------------------


def test_an_mlp_cell_trains_on_cifar10_from_the_archive_a_user_gives(tmp_path):
    import json

    import run
    from ibci.cli import compose
    from ibci.runs.validate import validate

    path = write_cifar10_archive(tmp_path / "cifar-10-python.tar.gz", 40, 30, SEED)
    cfg = compose(["data=cifar10", f"data.path={path}", "data.verify=false", "net=mlp4", "init=ibci",
                   "profile=smoke", "seeds=2", "batch_size=50", "progress=false", "threads=1",
                   f"results_dir={tmp_path / 'results'}"])
    rec = run.run_cell(cfg)
    assert rec["cell"]["data"] == "cifar10" and all(s["min_error"] is not None for s in rec["seeds"])
    saved = json.loads((tmp_path / "results" / "runs" / rec["cell_id"] / "record.json").read_text())
    assert saved["init_info"] is not None
    moved = compose(["data=cifar10", f"data.path={tmp_path}", "data.verify=false", "net=mlp4", "init=ibci",
                     "profile=smoke", "seeds=2", "batch_size=50", f"results_dir={tmp_path / 'results'}"])
    from ibci.runs.records import cell_id

    assert cell_id(moved) == rec["cell_id"]  # where the file lies is not part of the cell
    with pytest.raises(UserError, match="net=cnn is the LeNet of 28x28"):
        validate(compose(["data=cifar10", "net=cnn"]))
    with pytest.raises(DataError, match="is not the official cifar-10-python.tar.gz"):
        run.run_cell(compose(["data=cifar10", f"data.path={path}", "net=mlp4", "profile=smoke", "progress=false",
                              f"results_dir={tmp_path / 'other'}"]))
    assert not (tmp_path / "other" / "runs").exists() or not any((tmp_path / "other" / "runs").iterdir())


def test_resnet18_trains_as_a_cell_under_the_official_recipe_on_a_synthetic_archive(tmp_path):
    import run
    from ibci.cli import compose
    from ibci.runs.validate import validate

    path = write_cifar10_archive(tmp_path / "cifar-10-python.tar.gz", 10, 10, SEED)
    cfg = compose(["experiment=cifar", "net=resnet18", "method=nsr", f"data.path={path}", "data.verify=false",
                   "protocol=min", "seeds=2", "epochs=1", "batch_size=25", "data.train_limit=25", "progress=false",
                   "threads=1", f"results_dir={tmp_path / 'results'}"])
    assert (cfg["momentum"], cfg["augment"], cfg["reg"]["layer"], cfg["base"]["name"]) == (0.9, "crop_flip", "bn1",
                                                                                          "official")
    rec = run.run_cell(cfg)
    assert rec["cell_id"].startswith("official-vanilla+nsr-resnet18-cifar10-") and len(rec["seeds"]) == 2
    assert all(s["epoch0_error"] is not None and s["final_error"] is not None for s in rec["seeds"])
    for overrides, part in ((["init=ibci"], "base=official init=vanilla"), (["data=mnist"], "give data=cifar10"),
                            (["net=mlp4"], "base=official is the NSR code's init")):
        with pytest.raises(UserError, match=part):
            validate(compose(["experiment=cifar", "net=resnet18", *overrides]))
    with pytest.raises(UserError, match="names a layer of net=resnet18 or net=vgg19"):
        validate(compose(["method=nsr", "reg.layer=bn1"]))
    validate(compose(["experiment=cifar", "net=vgg19", "method=vanilla"]))  # the net's layer, unread without NSR
