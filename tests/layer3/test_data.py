"""The data pipeline: normalisation, augmentation that is a translated/flipped copy of the image,
augmentation and shuffling as functions of (seed, epoch, index), worker independence."""

import numpy as np
import pytest
import torch

from layer0_math.datasets import CIFAR10_CLASSES
from layer3_framework import (
    CharDataset,
    CharText,
    ImageData,
    ImageDataset,
    ImageTransform,
    ResumableSampler,
    build_loader,
)
from layer3_framework.train import compose


def _images(n=12, c=3, h=8, w=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, c, h, w), dtype=np.uint8), rng.integers(0, 10, n)


def test_normalisation_matches_numpy():
    x, y = _images()
    mean, std = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
    ds = ImageDataset(x, y, ImageTransform(mean, std))
    got = torch.stack([ds[i][0] for i in range(len(ds))]).numpy()
    ref = (x / 255.0 - np.array(mean)[:, None, None]) / np.array(std)[:, None, None]
    np.testing.assert_allclose(got, ref, atol=1e-5)
    assert [int(ds[i][1]) for i in range(len(ds))] == y.tolist()


def _matches(aug: np.ndarray, img: np.ndarray, p: int) -> list[tuple[int, int, bool]]:
    """Every (dy, dx, flipped) for which aug is that crop of the zero-padded img."""
    c, h, w = img.shape
    padded = np.pad(img, ((0, 0), (p, p), (p, p)))
    found = []
    for dy in range(2 * p + 1):
        for dx in range(2 * p + 1):
            crop = padded[:, dy : dy + h, dx : dx + w]
            for flipped, cand in ((False, crop), (True, crop[:, :, ::-1])):
                if np.array_equal(cand, aug):
                    found.append((dy, dx, flipped))
    return found


def test_augmentation_is_a_padded_crop_or_flip_and_covers_all_offsets():
    x, y = _images(n=200, c=1, h=6, w=6)
    identity = ImageTransform([0.0], [1 / 255])  # x' = x: compare raw pixels
    ds = ImageDataset(
        x, y, ImageTransform([0.0], [1 / 255], crop_padding=2, flip=True), augment=True, seed=5
    )
    seen, flips = set(), 0
    for i in range(len(ds)):
        aug = ds[i][0].round().to(torch.uint8).numpy()
        found = _matches(aug, identity(ds.images[i], None).round().to(torch.uint8).numpy(), 2)
        assert found, f"sample {i}: augmented image is no padded crop/flip of the original"
        seen.add(found[0][:2])
        flips += found[0][2]
    assert seen == {(dy, dx) for dy in range(5) for dx in range(5)}
    assert 60 < flips < 140  # Binomial(200, 1/2): ±5.6 sd


def test_augmentation_is_a_function_of_seed_epoch_index():
    x, y = _images()
    t = ImageTransform([0.5] * 3, [0.5] * 3, crop_padding=2, flip=True)
    a = ImageDataset(x, y, t, augment=True, seed=1)
    b = ImageDataset(x, y, t, augment=True, seed=1)
    assert all(torch.equal(a[i][0], b[i][0]) for i in range(len(a)))
    b.set_epoch(1)
    assert sum(not torch.equal(a[i][0], b[i][0]) for i in range(len(a))) >= len(a) // 2


def test_sampler_permutes_per_epoch_and_resumes_at_an_offset():
    s = ResumableSampler(50, seed=3)
    e0 = list(s)
    assert sorted(e0) == list(range(50))
    s.set_epoch(1)
    e1 = list(s)
    assert sorted(e1) == list(range(50)) and e1 != e0
    s.set_epoch(1, offset=20)
    assert list(s) == e1[20:] and len(s) == 30
    assert list(ResumableSampler(5, shuffle=False)) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="offset"):
        s.set_epoch(0, offset=51)


class _NumpyNoise(torch.utils.data.Dataset):
    """Returns numpy global-RNG draws: what an un-seeded worker would repeat across workers."""

    def __len__(self):
        return 8

    def __getitem__(self, i):
        draw = np.random.rand()  # noqa: NPY002 (the global stream, as a careless transform would)
        return torch.tensor(draw), torch.tensor(i)


@pytest.mark.slow
def test_batches_do_not_depend_on_worker_count_and_workers_are_seeded():
    x, y = _images(n=40)
    t = ImageTransform([0.5] * 3, [0.5] * 3, crop_padding=2, flip=True)
    ds = ImageDataset(x, y, t, augment=True, seed=2)
    ref = [b for b in build_loader(ds, 8, shuffle=True, seed=4)]
    par = [b for b in build_loader(ds, 8, shuffle=True, seed=4, num_workers=2)]
    assert all(
        torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(ref, par, strict=True)
    )
    noise1 = torch.cat([b[0] for b in build_loader(_NumpyNoise(), 4, shuffle=False, num_workers=2)])
    noise2 = torch.cat([b[0] for b in build_loader(_NumpyNoise(), 4, shuffle=False, num_workers=2)])
    assert torch.equal(noise1, noise2)  # reproducible
    assert not torch.equal(noise1[:4], noise1[4:])  # the two workers draw different numbers


def test_char_dataset_targets_are_inputs_shifted_by_one():
    ids = np.arange(23) * 3 % 17
    ds = CharDataset(ids, seq_len=5)
    assert len(ds) == 4
    for i in range(len(ds)):
        x, t = ds[i]
        np.testing.assert_array_equal(x.numpy(), ids[5 * i : 5 * i + 5])
        np.testing.assert_array_equal(t.numpy(), ids[5 * i + 1 : 5 * i + 6])


def _cifar(**kw):
    base = {"name": "cifar10", "shape": [3, 32, 32], "classes": list(CIFAR10_CLASSES)}
    return ImageData(**{**base, "mean": [0.5] * 3, "std": [0.25] * 3, **kw})


def test_bad_configs_are_clear_errors():
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        _cifar(name="imagenet")
    with pytest.raises(ValueError, match="data source"):
        _cifar(source="web")
    with pytest.raises(ValueError, match="data.n_train must be >= 1"):
        _cifar(n_train=0)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        _cifar(shape=[32, 32])
    with pytest.raises(RuntimeError, match="not set up"):
        _cifar(source="synthetic").train_loader()
    with pytest.raises(ValueError, match="uint8"):
        ImageDataset(
            np.zeros((2, 3, 4, 4), np.float32),
            np.zeros(2, np.int64),
            ImageTransform([0.5] * 3, [0.5] * 3),
        )


def test_image_module_supplies_sizes_and_preprocessing():
    data = _cifar(source="synthetic", n_train=20, n_test=10, crop_padding=4, flip=True)
    bundle = data.setup(0)
    assert data.setup(0) is bundle  # built once
    assert (len(bundle.train), len(bundle.test)) == (20, 10)
    assert bundle.train[0][0].shape == (3, 32, 32)
    sizes = data.model_kwargs()
    assert sizes == {"in_channels": 3, "image_size": 32, "in_features": 3072, "num_classes": 10}
    assert set(sizes) == set(type(data).SIZES)
    pre = data.preprocessing()
    assert pre["classes"] == list(CIFAR10_CLASSES) and pre["mean"] == [0.5] * 3
    data.batch_size = 8
    x, y = next(iter(data.train_loader(0)))
    assert x.shape == (8, 3, 32, 32) and y.shape == (8,)


def test_the_configs_class_names_are_the_datasets():
    """The class names a checkpoint carries come from the data config: they must be the
    registry's (CIFAR-10's label order) and MNIST's digits."""
    cifar = compose(["data=cifar10"]).data
    assert list(cifar.classes) == list(CIFAR10_CLASSES)
    assert list(compose(["data=mnist"]).data.classes) == [str(d) for d in range(10)]


def test_text_module_vocabulary_is_the_texts_characters():
    data = CharText(name="tiny_shakespeare", source="synthetic", seq_len=8, n_train=40, n_test=10)
    bundle = data.setup(3)
    ids = torch.cat([bundle.train[i][0] for i in range(len(bundle.train))])
    chars = data.preprocessing()["chars"]
    assert data.model_kwargs() == {"vocab_size": len(chars)} and chars == sorted(set(chars))
    assert int(ids.max()) < len(chars) and len(bundle.train) == 40


@pytest.mark.data
def test_real_cifar10_and_mnist_subsets_are_normalised():
    stats = {"mean": [0.4913, 0.4821, 0.4465], "std": [0.2452, 0.2428, 0.2606]}
    data = _cifar(**stats, n_train=2000, n_test=500).setup(0)
    x = torch.stack([data.train[i][0] for i in range(len(data.train))])
    assert x.shape == (2000, 3, 32, 32)
    assert x.mean(dim=(0, 2, 3)).abs().max() < 0.05
    assert (x.std(dim=(0, 2, 3)) - 1).abs().max() < 0.05
    labels = torch.stack([data.test[i][1] for i in range(len(data.test))])
    assert len(labels.unique()) == 10  # the class-sorted test split was subsampled at random
    mnist = ImageData(
        name="mnist",
        shape=[1, 28, 28],
        classes=list("0123456789"),
        mean=[0.1307],
        std=[0.3081],
        n_train=100,
    ).setup(0)
    assert mnist.train[0][0].shape == (1, 28, 28) and len(mnist.test) == 10000
