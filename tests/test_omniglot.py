"""Omniglot on the shared copy of the official release: loader, splits, episodes, Conv4
meta-gradients (vmap over tasks against the per-task loop), training/evaluation, bad input."""

from __future__ import annotations

import json
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch.nn import functional as F

from metarl.adapt import adapt_tasks, task_losses
from metarl.algos import of_kind
from metarl.config import MetaConfig
from metarl.conv4 import Conv4
from metarl.envs.omniglot import DRAWINGS, Omniglot, cache_path, find_root, load
from metarl.errors import ConfigError, DataError
from metarl.params import forward_fn, params_of
from metarl.rules import SGD, MetaSGD
from metarl.scripts import evaluate, train
from metarl.scripts.presets import PRESETS
from oracles import adapt_reference

ALGORITHMS = {cls.name: cls for cls in of_kind("supervised")}
SHARED = Path(__file__).resolve().parents[2] / "shared/data/omniglot"


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> str:
    """Decode the real zips once per session into a temporary cache (the repo stays clean)."""
    assert (SHARED / "images_background.zip").is_file(), (
        f"the shared Omniglot data is missing at {SHARED}: clone the project beside shared/")
    path = tmp_path_factory.mktemp("omniglot-cache")
    load(SHARED, 28, str(path))
    return str(path)


def _family(cache_dir: str, **kw):
    return Omniglot(data_dir=str(SHARED), cache_dir=cache_dir, **kw).build()


def test_loader_counts_layout_and_pixels(cache_dir):
    family = _family(cache_dir)
    images, characters = family.images, family.characters
    assert images.shape == (1623, DRAWINGS, 28, 28) and images.dtype == torch.uint8
    assert images.numel() * images.element_size() / 2**20 == pytest.approx(24.3, abs=0.1)
    assert len(characters) == 1623 and images.shape[0] * images.shape[1] == 32460
    split = [c.split("/")[0] for c in characters]
    assert split.count("images_background") == 964 and split.count("images_evaluation") == 659
    assert len({c.rsplit("/", 1)[0] for c in characters}) == 50  # alphabets
    # ink = 1 on a 0 background: sparse strokes, empty borders, soft Lanczos edges
    x = images.float() / 255
    assert 0.03 < x.mean() < 0.2 and x[..., 0, :].mean() < 0.01
    assert ((x > 0.05) & (x < 0.95)).any()
    # the cache holds exactly what decoding gives; a second load reads it
    cached = cache_path(SHARED, 28, cache_dir)
    assert cached.is_file()
    again, names = load(SHARED, 28, cache_dir)
    assert torch.equal(again, images) and names == characters


def test_cache_matches_a_fresh_decode_of_one_image(cache_dir):
    family = _family(cache_dir)
    name = "images_background/Latin/character01"
    row = family.characters.index(name)
    with zipfile.ZipFile(SHARED / "images_background.zip") as z:
        first = sorted(n for n in z.namelist() if n.startswith(name + "/"))[0]
        image = Image.open(z.open(first)).convert("L").resize((28, 28), Image.LANCZOS)
    expected = 255 - torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).view(28, 28)
    assert torch.equal(family.images[row, 0], expected)


def test_splits_sizes_disjoint_and_seeded(cache_dir):
    family = _family(cache_dir)
    train_, test = family.splits["train"], family.splits["test"]
    assert len(train_) == 1200 and len(test) == 423
    assert set(train_.tolist()).isdisjoint(test.tolist())
    assert sorted(train_.tolist() + test.tolist()) == list(range(1623))
    assert torch.equal(_family(cache_dir).splits["test"], test)
    assert not torch.equal(_family(cache_dir, split_seed=2).splits["test"], test)

    vinyals = _family(cache_dir, split="vinyals")
    names = [vinyals.characters[i] for i in vinyals.splits["test"]]
    assert len(vinyals.splits["train"]) == 1200 and len(names) == 423
    assert all(n.startswith("images_evaluation/") for n in names)
    alphabets = {n.split("/")[1] for n in names}
    assert len(alphabets) == 13 and "Gurmukhi" in alphabets
    assert sum(n.split("/")[1] == "Gurmukhi" for n in names) == 4


def _source_drawings(family, tasks, t: int, j: int) -> torch.Tensor:
    """The 20 drawings of task t's class j, rotated as that task rotates them: [20, 28, 28]."""
    character, rotation = tasks.info[t, j].tolist()
    return torch.rot90(family.images[character].float() / 255, rotation, dims=(1, 2))


def _matches(images: torch.Tensor, drawings: torch.Tensor) -> torch.Tensor:
    """Index into ``drawings`` of each of ``images`` [M, 1, 28, 28] (-1 where none matches)."""
    equal = (images[:, None, 0] == drawings[None]).flatten(2).all(-1)  # [M, 20]
    return torch.where(equal.any(1), equal.float().argmax(1), torch.full_like(equal[:, 0], -1,
                                                                            dtype=torch.long))


@pytest.mark.parametrize("ways, shots, query", [(5, 1, None), (20, 5, 15)])
def test_episodes_shapes_labels_and_sources(cache_dir, ways, shots, query):
    family = _family(cache_dir, ways=ways, shots=shots, query=query)
    q = shots if query is None else query
    tasks = family.sample(6, torch.Generator().manual_seed(0), split="test")
    (support_x, support_y), (query_x, query_y) = tasks.support, tasks.query
    assert support_x.shape == (6, ways * shots, 1, 28, 28)
    assert query_x.shape == (6, ways * q, 1, 28, 28)
    assert support_x.dtype == torch.float32 and support_y.dtype == torch.int64
    assert support_x.min() >= 0 and support_x.max() <= 1
    for t in range(6):
        assert torch.equal(support_y[t].bincount(), torch.full((ways,), shots))
        assert torch.equal(query_y[t].bincount(), torch.full((ways,), q))
        characters = tasks.info[t, :, 0]
        assert len(set(characters.tolist())) == ways  # distinct characters per task
        assert set(characters.tolist()) <= set(family.splits["test"].tolist())
        for j in range(ways):
            drawings = _source_drawings(family, tasks, t, j)
            s = _matches(support_x[t][support_y[t] == j], drawings)
            qq = _matches(query_x[t][query_y[t] == j], drawings)
            # every example is a drawing of its class's character, rotated as the task says;
            # support and query never share a drawing
            assert (s >= 0).all() and (qq >= 0).all()
            assert len(set(s.tolist()) | set(qq.tolist())) == shots + q
    again = family.sample(6, torch.Generator().manual_seed(0), split="test")
    assert torch.equal(again.query[0], query_x) and torch.equal(again.info, tasks.info)


def test_rotation_augmentation_and_label_assignment(cache_dir):
    family = _family(cache_dir)
    tasks = family.sample(400, torch.Generator().manual_seed(1))
    rotations = tasks.info[..., 1].flatten().bincount(minlength=4)
    assert rotations.shape == (4,) and (rotations > 400 * 5 / 4 * 0.85).all()
    # labels are a fresh random assignment: a character's label varies across tasks
    labels: dict[int, list[int]] = {}
    for character, label in zip(tasks.info[..., 0].flatten().tolist(), list(range(5)) * 400):
        labels.setdefault(character, []).append(label)
    repeated = [v for v in labels.values() if len(v) >= 3]
    assert len(repeated) > 100 and sum(len(set(v)) > 1 for v in repeated) > 0.9 * len(repeated)
    plain = _family(cache_dir, rotate=False).sample(50, torch.Generator().manual_seed(1))
    assert (plain.info[..., 1] == 0).all()
    t0 = _family(cache_dir, rotate=False).sample(1, torch.Generator().manual_seed(3))
    drawings = family.images[t0.info[0, 0, 0]].float() / 255
    assert _matches(t0.support[0][0][:1], drawings).item() >= 0


def _conv4_problem(steps_tasks: int = 3, ways: int = 3, shots: int = 2):
    torch.manual_seed(0)
    model = Conv4(ways, in_channels=1, hidden=6, image_size=16).double()
    forward = forward_fn(model)

    def loss(params, data):
        return F.cross_entropy(forward(params, data[0]), data[1])

    x = torch.rand(steps_tasks, 2, ways * shots, 1, 16, 16, dtype=torch.float64)
    y = torch.arange(ways).repeat_interleave(shots).expand(steps_tasks, -1)
    return model, loss, (x[:, 0], y), (x[:, 1], y)


@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("method", ["maml", "fomaml", "metasgd"])
def test_conv4_vmap_meta_gradient_equals_per_task_loop(steps, method):
    """The batch-statistics Conv4 through vmap gives the reference second-order gradient."""
    model, loss, support, query = _conv4_problem()
    params = params_of(model)
    leaves = list(params.values())
    rule = MetaSGD.create(params, 0.3) if method == "metasgd" else SGD(0.4)
    leaves += list(rule.parameters().values())
    kw = dict(rule=rule, steps=steps, first_order=method == "fomaml")
    adapted = adapt_tasks(loss, params, support, **kw)
    g_vmap = torch.autograd.grad(task_losses(loss, adapted, query).mean(), leaves)
    n = support[0].shape[0]
    reference = adapt_reference(loss, params, [(support[0][i], support[1][i]) for i in range(n)],
                                **kw)
    ref_loss = torch.stack([loss(a, (query[0][i], query[1][i])) for i, a in enumerate(reference)])
    g_loop = torch.autograd.grad(ref_loss.mean(), leaves)
    for a, b in zip(g_vmap, g_loop):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
    assert all(g.abs().sum() > 0 for g in g_vmap)


def test_conv4_uses_batch_statistics_and_published_shapes():
    model = Conv4(5)
    x = torch.rand(7, 1, 28, 28)
    assert model(x).shape == (7, 5)
    assert model.head.in_features == 64  # 28 -> 14 -> 7 -> 3 -> 1
    assert not any("running" in name for name, _ in model.named_buffers())
    # the same function in train and eval mode: batch statistics always
    model.eval()
    out_eval = model(x)
    model.train()
    torch.testing.assert_close(model(x), out_eval)
    assert Conv4(5, downsample="stride")(x).shape == (7, 5)
    # the plain-op batch norm computes what the built-in one computes in training mode
    h = 3 + 2 * torch.randn(7, 4, 5, 5)
    norm = model.norms[0].__class__(4)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2)
        norm.bias.normal_()
    expected = F.batch_norm(h, None, None, norm.weight, norm.bias, training=True, eps=norm.eps)
    torch.testing.assert_close(norm(h), expected, rtol=1e-4, atol=1e-5)


def _tiny(tmp_path, cache_dir, method: str):
    base = PRESETS["omniglot-5w1s"][1]
    task = replace(base.task, data_dir=str(SHARED), cache_dir=cache_dir, hidden=8, eval_tasks=10)
    return replace(base, task=task, out=str(tmp_path / method), algo=ALGORITHMS[method](),
                   meta=replace(base.meta, iterations=3, meta_batch=4,
                                log_every=1, checkpoint_every=3))


@pytest.mark.parametrize("method", ALGORITHMS)
def test_every_method_trains_and_evaluates_on_omniglot(tmp_path, cache_dir, method):
    path = train.train(_tiny(tmp_path, cache_dir, method), progress=False)
    out = tmp_path / "eval"
    summary = evaluate.evaluate(evaluate.Evaluate(runs=(str(path.parent),), steps=2,
                                                  out=str(out)))
    assert summary["tasks"] == 10 and summary["metric"] == "accuracy"
    curve = summary["methods"][method]["accuracy"]["mean"]
    assert len(curve) == 3 and all(0 <= v <= 100 for v in curve)  # percent
    assert json.loads((out / "results.json").read_text())["task"] == "omniglot-5w1s"


def test_presets_carry_the_published_settings():
    for name, ways, batch, lr, steps in (("omniglot-5w1s", 5, 32, 0.4, 1),
                                         ("omniglot-5w5s", 5, 32, 0.4, 1),
                                         ("omniglot-20w1s", 20, 16, 0.1, 5),
                                         ("omniglot-20w5s", 20, 16, 0.1, 5)):
        config = PRESETS[name][1]
        assert config.task.ways == ways and config.meta.meta_batch == batch
        assert config.meta.inner_lr == lr and config.meta.inner_steps == steps
        assert config.meta.iterations == 60_000 and config.algo.outer_lr == 1e-3
        assert config.task.eval_tasks == 600 and config.task.query is None


# --- bad input ---------------------------------------------------------------------------------


def _fake_release(root: Path, characters: int = 6, drawings: int = DRAWINGS) -> Path:
    """An extracted-folder release with a few blank-ish characters (for error paths)."""
    for split in ("images_background", "images_evaluation"):
        for c in range(characters // 2):
            folder = root / split / "Alpha" / f"character{c + 1:02d}"
            folder.mkdir(parents=True)
            for d in range(drawings):
                image = Image.new("1", (105, 105), 1)
                image.putpixel((c + d, 50), 0)
                image.save(folder / f"{c:04d}_{d + 1:02d}.png")
    return root


def test_extracted_folders_are_read_and_too_many_ways_is_refused(tmp_path):
    root = _fake_release(tmp_path / "data")
    family = Omniglot(ways=2, data_dir=str(root), cache_dir=str(tmp_path / "c"),
                      train_characters=4).build()
    assert family.images.shape == (6, DRAWINGS, 28, 28)
    assert family.images[0, 0].max() > 0  # the one ink pixel survives the resize
    with pytest.raises(DataError, match=r"ways N=3 exceeds the 2 characters of the test split"):
        Omniglot(ways=3, data_dir=str(root), cache_dir=str(tmp_path / "c"),
                 train_characters=4).build()


def test_incomplete_character_is_named(tmp_path):
    root = _fake_release(tmp_path / "data", characters=2, drawings=19)
    with pytest.raises(DataError, match=r"character01 has 19 drawings, expected 20"):
        Omniglot(data_dir=str(root), cache_dir=str(tmp_path / "c"), train_characters=1).build()


def test_missing_or_wrong_layout_says_where_it_looked_and_how_to_fix(tmp_path):
    with pytest.raises(DataError, match=r"looked for images_background.*--task.download"):
        find_root(str(tmp_path / "nowhere"))
    (tmp_path / "flat").mkdir()
    Image.new("1", (105, 105), 1).save(tmp_path / "flat" / "0001_01.png")
    with pytest.raises(DataError, match=str(tmp_path / "flat")):
        find_root(str(tmp_path / "flat"))
    wrong = tmp_path / "wrong"
    for split in ("images_background", "images_evaluation"):
        (wrong / split).mkdir(parents=True)
        Image.new("1", (105, 105), 1).save(wrong / split / "0001_01.png")
    with pytest.raises(DataError, match=r"<split>/<Alphabet>/<characterNN>/<image>.png"):
        Omniglot(data_dir=str(wrong), cache_dir=str(tmp_path / "c")).build()
    bad_zip = tmp_path / "badzip"
    bad_zip.mkdir()
    for split in ("images_background", "images_evaluation"):
        (bad_zip / f"{split}.zip").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a valid zip"):
        Omniglot(data_dir=str(bad_zip), cache_dir=str(tmp_path / "c")).build()


def test_download_fetches_both_official_zips_atomically(tmp_path, monkeypatch):
    """The download path, offline: urlretrieve is replaced by a copy of the shared zips."""
    import shutil

    import metarl.envs.omniglot as omniglot

    fetched = []

    def fake_urlretrieve(url, target):
        fetched.append(url)
        shutil.copy(SHARED / url.rsplit("/", 1)[1], target)

    monkeypatch.setattr(omniglot.urllib.request, "urlretrieve", fake_urlretrieve)
    root = find_root(str(tmp_path / "dl"), download=True)
    assert sorted(p.name for p in root.iterdir()) == ["images_background.zip",
                                                      "images_evaluation.zip"]
    assert all(u.startswith("https://raw.githubusercontent.com/brendenlake/omniglot/")
               for u in fetched)

    def offline(url, target):
        raise OSError("network unreachable")

    monkeypatch.setattr(omniglot.urllib.request, "urlretrieve", offline)
    with pytest.raises(DataError, match="could not download .* by hand into"):
        find_root(str(tmp_path / "dl2"), download=True)
    assert not list((tmp_path / "dl2").iterdir())  # no partial file left behind


@pytest.mark.parametrize("kwargs, match", [
    (dict(shots=5, query=16), r"K \+ Q = 5 \+ 16 exceeds the 20 drawings"),
    (dict(shots=15), r"K \+ Q = 15 \+ 15 exceeds the 20 drawings"),
    (dict(ways=0), "ways must be a positive integer"),
    (dict(query=0), "query must be a positive integer"),
    (dict(train_characters=1623), "train_characters"),
])
def test_bad_task_config_is_refused(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Omniglot(**kwargs)


def test_cli_bad_omniglot_input_is_one_line(tmp_path, capsys):
    for argv, match in (
        (["omniglot-5w1s", "--task.shots", "12", "--task.query", "12"], "exceeds the 20 drawings"),
        (["omniglot-5w1s", "--task.data-dir", str(tmp_path), "--out", str(tmp_path / "r")],
         "Omniglot not found"),
    ):
        with pytest.raises(SystemExit):
            train.main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and match in err[0] and err[0].startswith("metarl-train: error:")
        assert not (tmp_path / "r").exists()  # bad input leaves no run folder behind


def test_config_roundtrip_of_an_omniglot_preset():
    from metarl.config import from_dict, to_dict
    from metarl.scripts.experiments import config_types
    from metarl.scripts.presets import task_types

    config = PRESETS["omniglot-20w5s"][1]
    assert from_dict(to_dict(config), config_types(task_types())) == config
    assert isinstance(config.meta, MetaConfig)
