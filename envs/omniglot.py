"""Omniglot N-way K-shot classification (Lake et al., 2015; Finn et al., 2017, Section 5.2).

Data: the official release, ``images_background.zip`` (30 alphabets, 964 characters) and
``images_evaluation.zip`` (20 alphabets, 659 characters), or their extracted folders, laid out
as ``<split>/<Alphabet>/<characterNN>/<id>_<drawer>.png`` (105x105, 20 drawings a character).

Preprocessing follows Finn et al.'s code: each drawing resized to 28x28 with Lanczos
resampling (from grayscale, so the result has soft edges), pixels in [0, 1] with ink = 1. The
1623 characters are shuffled with a seed and the first 1200 meta-train, the other 423 test
("random" split, Vinyals et al. 2016 / Finn et al.); ``split="vinyals"`` takes the
alphabet-based split used by Vinyals et al.'s released splits (test = 423 characters of 13
evaluation alphabets, train = the other 1200).

Everything is decoded once into one uint8 tensor ``[1623, 20, 28, 28]`` (25 MB), cached as a
``.pt`` file so later runs skip the PNGs; a task is built by indexing it.

A task (as in Finn et al.'s ``make_data_tensor``): N distinct characters of the split, each
with its own rotation by 0/90/180/270 degrees drawn uniformly per task (the augmentation that
turns 1200 characters into 4800 classes), K support and Q query drawings per class drawn
without replacement from its 20. Label j is the j-th character drawn, so the assignment of
labels 0..N-1 to characters is a fresh random permutation in every task. Finn et al. use
Q = K (``update_batch_size * 2`` samples per class) both in training and at test time; that
is the default here (``query=None``).
"""

from __future__ import annotations

import hashlib
import io
import os
import urllib.request
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar, Literal

import torch
from PIL import Image
from torch import Tensor, nn
from torch.nn import functional as F

from metarl.checkpoint import write_atomically
from metarl.config import check, check_nonnegative_int
from metarl.conv4 import Conv4, Downsample
from metarl.errors import DataError
from metarl.params import Params
from metarl.stats import Metric
from metarl.tasks import Forward, TaskBatch

SPLITS = ("images_background", "images_evaluation")
DRAWINGS = 20
URL = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/{}.zip"
# Vinyals et al.'s test characters: 12 evaluation alphabets and Gurmukhi characters 42-45.
VINYALS_TEST_ALPHABETS = (
    "Kannada", "Keble", "Malayalam", "Manipuri", "Mongolian", "Old_Church_Slavonic_(Cyrillic)",
    "Oriya", "Sylheti", "Syriac_(Serto)", "Tengwar", "Tibetan", "ULOG")
VINYALS_TEST_GURMUKHI = ("character42", "character43", "character44", "character45")
CACHE_VERSION = 1


@dataclass(frozen=True)
class Omniglot:
    """Omniglot N-way K-shot task family; also its own config (every field is a CLI option)."""

    ways: int = 5
    """N: classes (characters) per task."""
    shots: int = 1
    """K: support drawings per class."""
    query: int | None = None
    """Q: query drawings per class (default: K, as Finn et al.'s code)."""
    image_size: int = 28
    rotate: bool = True
    """Rotate each class of a task by a random multiple of 90 degrees (train and test)."""
    split: Literal["random", "vinyals"] = "random"
    """random: seeded shuffle of the 1623 characters, 1200 meta-train, the rest test;
    vinyals: the alphabet-based split of Vinyals et al. (1200 / 423)."""
    train_characters: int = 1200
    """Meta-training characters of the random split."""
    split_seed: int = 1
    downsample: Downsample = "maxpool"
    """maxpool: the published Conv4; stride: stride-2 convolutions as Finn et al.'s code."""
    hidden: int = 64
    """Filters per convolution."""
    eval_tasks: int = 600
    """Held-out tasks for evaluation (Finn et al.: 600)."""
    data_dir: str | None = None
    """Folder holding images_background(.zip) and images_evaluation(.zip); default: $METARL_DATA
    /omniglot, $OMNIGLOT_DIR, ./data/omniglot, ../shared/data/omniglot."""
    cache_dir: str | None = None
    """Where the decoded tensor is cached (default: $METARL_CACHE or ~/.cache/metarl)."""
    download: bool = False
    """Download the official zips into data_dir (or ./data/omniglot) when they are missing."""

    def __post_init__(self) -> None:
        for field in ("ways", "shots", "image_size", "hidden", "eval_tasks"):
            value = getattr(self, field)
            check(isinstance(value, int) and value > 0,
                  f"{field} must be a positive integer, got {value!r}")
        check(self.query is None or (isinstance(self.query, int) and self.query > 0),
              f"query must be a positive integer (or None for Q = K), got {self.query!r}")
        check(self.shots + self.queries <= DRAWINGS,
              f"K + Q = {self.shots} + {self.queries} exceeds the {DRAWINGS} drawings of an "
              "Omniglot character; lower --task.shots or --task.query")
        check(0 < self.train_characters < 1623,
              f"train_characters must be in 1..1622, got {self.train_characters}")
        check(self.split in ("random", "vinyals"),
              f"unknown split {self.split!r}; use 'random' or 'vinyals'")
        check(self.image_size >= 16, f"image_size must be >= 16, got {self.image_size}")
        check_nonnegative_int("split_seed", self.split_seed)

    @property
    def queries(self) -> int:
        return self.shots if self.query is None else self.query

    @property
    def tag(self) -> str:
        return f"omniglot-{self.ways}w{self.shots}s"

    def build(self) -> OmniglotFamily:
        """Load (or decode and cache) the images and fix the character split."""
        root = find_root(self.data_dir, download=self.download)
        images, characters = load(root, self.image_size, self.cache_dir)
        return OmniglotFamily(self, images, characters)


class OmniglotFamily:
    """The loaded data set and sampler behind an :class:`Omniglot` config."""

    metrics: ClassVar[tuple[Metric, ...]] = (
        Metric("accuracy", higher_is_better=True, label="accuracy (%)", decimals=(2, 2)),)

    def __init__(self, config: Omniglot, images: Tensor, characters: list[str]) -> None:
        self.config = config
        self.images = images
        """uint8 ``[C, 20, S, S]``, ink = 255."""
        self.characters = characters
        """``<split>/<Alphabet>/<characterNN>`` of each row of ``images``."""
        self.splits = split_characters(characters, config)
        for split, index in self.splits.items():
            if config.ways > len(index):
                raise DataError(f"ways N={config.ways} exceeds the {len(index)} characters of "
                                f"the {split} split; lower --task.ways")
        size = config.image_size
        grid = torch.arange(size * size).view(size, size)
        # Pixel index maps of the four rotations, so one gather rotates every class at once.
        self.rotations = torch.stack([torch.rot90(grid, k).reshape(-1) for k in range(4)])

    drawings: ClassVar[int] = DRAWINGS

    @property
    def tag(self) -> str:
        return self.config.tag

    @property
    def ways(self) -> int:
        return self.config.ways

    @property
    def shots(self) -> int:
        return self.config.shots

    @property
    def queries(self) -> int:
        return self.config.queries

    @property
    def train_characters(self) -> int:
        return len(self.splits["train"])

    @property
    def classes(self) -> int:
        """Meta-training classes of the pretraining baseline: each meta-training character in
        each rotation is its own class (as Finn et al.'s code augments)."""
        return self.train_characters * (4 if self.config.rotate else 1)

    @property
    def eval_tasks(self) -> int:
        return self.config.eval_tasks

    @property
    def eval_chunk(self) -> int:
        """Tasks fine-tuned at once in evaluation: about 1,000 images, so memory stays bounded
        and progress shows."""
        cfg = self.config
        return max(1, 1000 // (cfg.ways * (cfg.shots + cfg.queries)))

    def sample(self, num_tasks: int, generator: torch.Generator, split: str = "train"
               ) -> TaskBatch:
        """``num_tasks`` N-way tasks: support ``(x [T, N*K, 1, S, S], y [T, N*K] (int64))``,
        query ``(x [T, N*Q, 1, S, S], y [T, N*Q])``, info [T, N, 2] = (character, rotation).

        Examples are grouped by class (labels 0,..,0,1,..); the loss, accuracy and batch
        statistics do not depend on the order.
        """
        check(split in self.splits, f"unknown split {split!r}; use 'train' or 'test'")
        pool = self.splits[split]
        cfg = self.config
        n, k, q, size = cfg.ways, cfg.shots, cfg.queries, cfg.image_size
        # The k largest of iid uniforms: a uniformly random ordered k-subset, in O(n).
        chars = pool[torch.rand(num_tasks, len(pool), generator=generator).topk(n, 1).indices]
        draws = torch.rand(num_tasks, n, DRAWINGS, generator=generator).topk(k + q, -1).indices
        rows = (chars.unsqueeze(-1) * DRAWINGS + draws).view(-1)
        images = self.images.view(-1, size * size).index_select(0, rows)
        images = images.view(num_tasks, n, k + q, size * size)
        if cfg.rotate:
            rotation = torch.randint(4, (num_tasks, n), generator=generator)
            index = self.rotations[rotation].unsqueeze(2).expand_as(images)
            images = images.gather(-1, index)
        else:
            rotation = torch.zeros(num_tasks, n, dtype=torch.long)
        images = images.view(num_tasks, n, k + q, 1, size, size).float().div_(255)
        labels = torch.arange(n).view(1, n, 1)
        support_y = labels.expand(num_tasks, n, k).reshape(num_tasks, n * k)
        query_y = labels.expand(num_tasks, n, q).reshape(num_tasks, n * q)
        return TaskBatch((images[:, :, :k].reshape(num_tasks, n * k, 1, size, size), support_y),
                         (images[:, :, k:].reshape(num_tasks, n * q, 1, size, size), query_y),
                         info=torch.stack([chars, rotation], -1))

    def episodes(self, ways: int, query: int) -> OmniglotFamily:
        """The same data and split, sampling ``ways``-way tasks with ``query`` query drawings
        per class (metric learners train with more ways than they test, Snell et al. 2017)."""
        return OmniglotFamily(replace(self.config, ways=ways, query=query), self.images,
                              self.characters)

    def sample_classes(self, size: int, generator: torch.Generator
                       ) -> tuple[Tensor, Tensor]:
        """``size`` meta-training drawings with their global labels in ``0..classes - 1``
        (character and rotation): ``x [size, 1, S, S]``, ``y [size]``."""
        cfg, rotations = self.config, 4 if self.config.rotate else 1
        y = torch.randint(self.classes, (size,), generator=generator)
        drawing = torch.randint(DRAWINGS, (size,), generator=generator)
        rows = self.splits["train"][y // rotations] * DRAWINGS + drawing
        images = self.images.view(-1, cfg.image_size ** 2).index_select(0, rows)
        images = images.gather(-1, self.rotations[y % rotations])
        return images.view(size, 1, cfg.image_size, cfg.image_size).float().div_(255), y

    def model(self) -> nn.Module:
        cfg = self.config
        return Conv4(cfg.ways, 1, cfg.hidden, cfg.image_size, cfg.downsample)

    def embedding(self) -> nn.Module:
        """The model without its head: images ``[B, 1, S, S]`` -> features ``[B, F]``."""
        cfg = self.config
        return Conv4(None, 1, cfg.hidden, cfg.image_size, cfg.downsample)

    def classifier(self) -> nn.Module:
        """The model with one output per meta-training class (:attr:`classes`)."""
        cfg = self.config
        return Conv4(self.classes, 1, cfg.hidden, cfg.image_size, cfg.downsample)

    def new_head(self, params: Params) -> Params:
        """``params`` of :meth:`classifier` with a new zero N-way head for one test task: every
        class starts equally likely, and the first fine-tuning step sets each class's weights
        towards its support features."""
        body = {k: v for k, v in params.items() if not k.startswith("head.")}
        weight = params["head.weight"]
        return {**body, "head.weight": weight.new_zeros(self.ways, weight.shape[1]),
                "head.bias": weight.new_zeros(self.ways)}

    def loss(self, forward: Forward, params: Params, data: tuple[Tensor, Tensor]) -> Tensor:
        """Cross-entropy of the logits ``[B, N]`` of images ``x`` against labels ``y [B]``."""
        x, y = data
        return F.cross_entropy(forward(params, x), y)

    def evaluate(self, forward: Forward, params: Params, data: tuple[Tensor, Tensor]
                 ) -> dict[str, Tensor]:
        """Accuracy (%) of the logits of images ``x`` against labels ``y``."""
        x, y = data
        return {"accuracy": 100 * (forward(params, x).argmax(-1) == y).float().mean()}


def split_characters(characters: list[str], config: Omniglot) -> dict[str, Tensor]:
    """Row indices of the meta-train and test characters."""
    if config.split == "vinyals":
        test = [i for i, c in enumerate(characters) if _vinyals_test(c)]
        train = [i for i, c in enumerate(characters) if not _vinyals_test(c)]
        return {"train": torch.tensor(train), "test": torch.tensor(test)}
    order = torch.randperm(len(characters), generator=torch.Generator().manual_seed(
        config.split_seed))
    return {"train": order[:config.train_characters].sort().values,
            "test": order[config.train_characters:].sort().values}


def _vinyals_test(character: str) -> bool:
    split, alphabet, name = character.split("/")
    return split == "images_evaluation" and (
        alphabet in VINYALS_TEST_ALPHABETS
        or (alphabet == "Gurmukhi" and name in VINYALS_TEST_GURMUKHI))


# --- locating, downloading, decoding and caching the release ---------------------------------


def candidate_roots(data_dir: str | None = None) -> list[Path]:
    """Where the data is looked for, in order."""
    if data_dir is not None:
        return [Path(data_dir).expanduser()]
    out = []
    if os.environ.get("METARL_DATA"):
        out += [Path(os.environ["METARL_DATA"]) / "omniglot", Path(os.environ["METARL_DATA"])]
    if os.environ.get("OMNIGLOT_DIR"):
        out.append(Path(os.environ["OMNIGLOT_DIR"]))
    repo = Path(__file__).resolve().parents[1]
    out += [Path("data/omniglot"), repo / "data/omniglot", repo.parent / "shared/data/omniglot"]
    return [p.expanduser() for p in out]


def _has_split(root: Path, split: str) -> bool:
    return (root / f"{split}.zip").is_file() or (root / split).is_dir()


def find_root(data_dir: str | None = None, download: bool = False) -> Path:
    """The first candidate folder holding both splits (zips or extracted folders)."""
    candidates = candidate_roots(data_dir)
    for root in candidates:
        if all(_has_split(root, s) for s in SPLITS):
            return root
    if download:
        if data_dir is not None:
            target = Path(data_dir).expanduser()
        elif os.environ.get("METARL_DATA"):
            target = Path(os.environ["METARL_DATA"]) / "omniglot"
        else:
            target = Path("data/omniglot")
        return download_omniglot(target)
    looked = ", ".join(str(p) for p in candidates)
    raise DataError(
        f"Omniglot not found: looked for images_background(.zip) and images_evaluation(.zip) in "
        f"{looked}; point --task.data-dir (or $METARL_DATA) at the folder holding them, or pass "
        f"--task.download to fetch them from {URL.format('<split>').rsplit('/', 1)[0]}")


def download_omniglot(root: Path) -> Path:
    """Fetch the official zips into ``root`` (each written atomically)."""
    root.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        target = root / f"{split}.zip"
        if target.is_file() or (root / split).is_dir():
            continue
        tmp = target.with_suffix(".zip.part")
        print(f"downloading {URL.format(split)} -> {target}")
        try:
            urllib.request.urlretrieve(URL.format(split), tmp)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise DataError(f"could not download {URL.format(split)} ({e}); download it by "
                            f"hand into {root}") from None
        os.replace(tmp, target)
    return root


def _members(root: Path, split: str) -> Iterator[tuple[str, str, bytes]]:
    """(``split/Alphabet/characterNN``, file name, PNG bytes) of one split, zip or folder."""
    archive = root / f"{split}.zip"
    if archive.is_file():
        try:
            with zipfile.ZipFile(archive) as z:
                for name in z.namelist():
                    parts = name.split("/")
                    if name.endswith(".png") and len(parts) == 4 and parts[0] == split:
                        yield "/".join(parts[:3]), parts[3], z.read(name)
        except zipfile.BadZipFile:
            raise DataError(f"{archive} is not a valid zip file; download it again") from None
        return
    for path in (root / split).glob("*/*/*.png"):
        yield f"{split}/{path.parent.parent.name}/{path.parent.name}", path.name, path.read_bytes()


def _decode(png: bytes, size: int) -> Tensor:
    """One 105x105 drawing -> uint8 ``[size, size]``, ink = 255 (Lanczos from grayscale)."""
    image = Image.open(io.BytesIO(png)).convert("L").resize((size, size), Image.LANCZOS)
    return 255 - torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).view(size, size)


def decode(root: Path, size: int = 28) -> tuple[Tensor, list[str]]:
    """All drawings of both splits: uint8 ``[1623, 20, size, size]`` and the character names."""
    groups: dict[str, list[tuple[str, bytes]]] = {}
    for split in SPLITS:
        for character, name, png in _members(root, split):
            groups.setdefault(character, []).append((name, png))
    if not groups:
        raise DataError(f"{root} holds no <split>/<Alphabet>/<characterNN>/<image>.png files; "
                        "expected the layout of the official Omniglot zips")
    characters = sorted(groups)
    for c in characters:
        if len(groups[c]) != DRAWINGS:
            raise DataError(f"{root}: {c} has {len(groups[c])} drawings, expected {DRAWINGS}; "
                            "the data set is incomplete, extract or download it again")
    pngs = [png for c in characters for _, png in sorted(groups[c])]
    # PIL releases the GIL while decoding and resizing, so threads use every core.
    with ThreadPoolExecutor(max(1, min(8, os.cpu_count() or 1))) as pool:
        images = list(pool.map(lambda b: _decode(b, size), pngs, chunksize=256))
    return torch.stack(images).view(len(characters), DRAWINGS, size, size), characters


def _fingerprint(root: Path, size: int) -> str:
    parts = [f"v{CACHE_VERSION}", str(size)]
    for split in SPLITS:
        archive = root / f"{split}.zip"
        if archive.is_file():
            parts.append(f"{split}.zip:{archive.stat().st_size}")
        else:
            parts.append(f"{split}/:{sum(1 for _ in (root / split).glob('*/*/*.png'))}")
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:12]


def cache_path(root: Path, size: int, cache_dir: str | None = None) -> Path:
    base = Path(cache_dir or os.environ.get("METARL_CACHE") or "~/.cache/metarl").expanduser()
    return base / f"omniglot-{size}px-{_fingerprint(root, size)}.pt"


def load(root: Path, size: int = 28, cache_dir: str | None = None) -> tuple[Tensor, list[str]]:
    """:func:`decode`, through an atomically written cache file."""
    path = cache_path(root, size, cache_dir)
    if path.is_file():
        try:
            cached = torch.load(path, weights_only=True)
            return cached["images"], list(cached["characters"])
        except Exception:  # a truncated or foreign file: decode again and overwrite it
            pass
    images, characters = decode(root, size)
    write_atomically(path, lambda f: torch.save(
        {"images": images, "characters": characters, "image_size": size}, f))
    return images, characters
