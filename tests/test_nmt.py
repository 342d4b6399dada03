"""Low-resource translation (MetaNMT, Gu et al. 2018) on the shared NTREX-128 files: loader and
document split, tokenizers, the functional Transformer's meta-gradients (vmap over tasks
against the per-task loop, second order, float64), decoding, metrics, fine-tuning, the smoke
preset through the commands, and bad input."""

from __future__ import annotations

import json
import math
import unicodedata
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from metarl.adapt import adapt_tasks, task_losses
from metarl.algos.metanmt import MetaNMT
from metarl.checkpoint import load_checkpoint
from metarl.config import MetaConfig
from metarl.envs.ntrex import (
    META_TRAIN,
    NTREX,
    TARGETS,
    english_tokens,
    split_documents,
    token_loss,
)
from metarl.params import forward_fn, params_of
from metarl.rules import SGD, Adam
from metarl.scripts import evaluate, train
from metarl.scripts.presets import PRESETS
from metarl.transformer import Shape, Transformer, decode, memory
from metarl.translation import (
    EOS,
    beam_search,
    corpus_scores,
    finetune,
    greedy,
    signatures,
    translate,
)
from oracles import adapt_reference

SHARED = Path(__file__).resolve().parents[2] / "shared/data/ntrex"


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> str:
    assert (SHARED / "newstest2019-src.eng.txt").is_file(), (
        f"the shared NTREX data is missing at {SHARED}: clone the project beside shared/")
    return str(tmp_path_factory.mktemp("ntrex-cache"))


@pytest.fixture(scope="session")
def family(cache_dir):
    """The default task family on the shipped data (tokenizers trained once, in a temporary
    cache)."""
    return NTREX(cache_dir=cache_dir).build()


# --- data ---------------------------------------------------------------------------------------


def test_loader_counts_and_document_split(family):
    corpus = family.corpus
    assert set(corpus.text) == {"eng", *META_TRAIN, *TARGETS} and len(corpus.text) == 24
    assert all(len(lines) == 1997 for lines in corpus.text.values())
    assert len(set(corpus.documents)) == 123
    lines = family.lines
    assert sorted(lines["train"] + lines["dev"] + lines["test"]) == list(range(1997))
    docs = {split: {corpus.documents[i] for i in lines[split]} for split in lines}
    assert [len(docs[s]) for s in ("train", "dev", "test")] == [74, 25, 24]  # 60/20/20
    assert docs["train"].isdisjoint(docs["test"]) and docs["train"].isdisjoint(docs["dev"])
    assert docs["dev"].isdisjoint(docs["test"])
    assert 1100 < len(lines["train"]) < 1350 and 300 < len(lines["test"]) < 500
    # no English sentence of a test document is in training
    english = corpus.text["eng"]
    assert not {english[i] for i in lines["test"]} & {english[i] for i in lines["train"]}
    # seeded: the same split again, another seed another one
    assert split_documents(corpus.documents, (0.6, 0.2), 1) == lines
    assert split_documents(corpus.documents, (0.6, 0.2), 2)["test"] != lines["test"]


def test_tasks_are_disjoint_sentence_batches_of_training_documents(family):
    tasks = family.sample(6, torch.Generator().manual_seed(0))
    (src, tgt), (qsrc, qtgt) = tasks.support, tasks.query
    assert src.shape[:2] == (6, 16) and qtgt.shape[:2] == (6, 16)
    assert src.shape[2] == qsrc.shape[2] and tgt.shape[2] == qtgt.shape[2]  # pooled alike
    languages, lines = tasks.info["language"], tasks.info["lines"]
    assert len(set(languages.tolist())) == 6  # distinct languages in a meta-batch
    train_lines = set(family.lines["train"])
    for t in range(6):
        assert set(lines[t].tolist()) <= train_lines
        assert len(set(lines[t].tolist())) == 32  # support and query disjoint
        lang = META_TRAIN[languages[t]]
        first = lines[t, 0].item()
        expect = family.source_ids[lang][first]
        assert src[t, 0, : len(expect)].tolist() == expect
        assert tgt[t, 0, 0].item() == 2 and EOS in tgt[t, 0].tolist()
    assert all(len(family.source_ids[META_TRAIN[lang]][i]) <= 81
               for lang, row in zip(languages.tolist(), lines.tolist()) for i in row)
    test = family.sample(5, torch.Generator().manual_seed(1), split="test")
    assert sorted(test.info["language"].tolist()) == [0, 1, 2, 3, 4]
    assert set(test.info["lines"][:, 16:].flatten().tolist()) <= set(family.lines["test"])
    again = family.sample(6, torch.Generator().manual_seed(0))
    assert torch.equal(again.query[1], qtgt)


def test_tokenizer_round_trip_and_cache(family, cache_dir):
    def normal(s: str) -> str:  # what sentencepiece's NFKC normalisation keeps
        return " ".join(unicodedata.normalize("NFKC", s).replace("\u200b", "").split())

    for lang in ("eng", *META_TRAIN, *TARGETS):
        sp = family.english if lang == "eng" else family.source
        text = family.corpus.text[lang]
        assert all(sp.decode(ids) == normal(s) for s, ids in zip(text, sp.encode(text))), lang
    assert family.source.get_piece_size() == 8000 and family.english.get_piece_size() == 2000
    unknown = sum(ids.count(1) for ids in family.target_ids)
    assert unknown == 0  # byte fallback: no character is unknown
    cached = sorted(Path(cache_dir).glob("bpe*.model"))
    assert len(cached) >= 2
    again = NTREX(cache_dir=cache_dir).build()  # reads the cache
    assert again.source_ids["kor"][:50] == family.source_ids["kor"][:50]


def test_budget_subsets_reach_the_budget_within_training_documents(family):
    english = family.corpus.text["eng"]
    for lang in TARGETS:
        for budget in (4000, 16000):
            lines = family.budget_lines(lang, budget, seed=0)
            tokens = sum(english_tokens(english[i]) for i in lines)
            assert budget <= tokens < budget + 200
            assert set(lines) <= set(family.pools[lang]["train"])
            assert family.budget_lines(lang, budget, seed=0) == lines
            assert family.budget_lines(lang, budget, seed=1) != lines
        assert 140 < len(family.budget_lines(lang, 4000, 0)) < 260  # ~190 sentences
    assert family.budget_lines("ron", 0, 0) == []


# --- the model ----------------------------------------------------------------------------------


def _tiny(dtype=torch.float64) -> Transformer:
    torch.manual_seed(0)
    return Transformer(Shape(vocab=13, target_vocab=11, d_model=8, heads=2, ff=16)).to(dtype)


def _tokens(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    src = torch.randint(4, 13, (n, 4, 6), generator=generator)
    src[..., -1] = EOS
    src[:, 0, 3:] = 0  # padding
    tgt = torch.randint(4, 11, (n, 4, 7), generator=generator)
    tgt[..., 0] = 2
    tgt[:, 1, 4:] = 0
    return src, tgt


@pytest.mark.parametrize("rule", ["sgd", "adam"])
@pytest.mark.parametrize("first_order", [False, True])
def test_transformer_vmap_meta_gradient_equals_per_task_loop(rule, first_order):
    """The Transformer's meta-gradient through vmap over tasks is the per-task autograd loop's
    (float64, 2 inner steps); the hand-written attention and layer norm make second order exact
    (F.layer_norm under vmap is ~1e-2 off here)."""
    model = _tiny()
    forward = forward_fn(model)

    def loss(params, data):
        return token_loss(forward, params, data, 0.1)

    g = torch.Generator().manual_seed(1)
    support, query = _tokens(3, g), _tokens(3, g)
    params = params_of(model)
    leaves = list(params.values())
    kw = dict(rule=SGD(0.5) if rule == "sgd" else Adam(0.05), steps=2, first_order=first_order)
    adapted = adapt_tasks(loss, params, support, **kw)
    g_vmap = torch.autograd.grad(task_losses(loss, adapted, query).mean(), leaves)
    reference = adapt_reference(loss, params, [(support[0][i], support[1][i]) for i in range(3)],
                                **kw)
    ref_loss = torch.stack([loss(a, (query[0][i], query[1][i])) for i, a in enumerate(reference)])
    g_loop = torch.autograd.grad(ref_loss.mean(), leaves)
    for a, b in zip(g_vmap, g_loop):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    assert all(g.abs().sum() > 0 for g in g_vmap)
    if not first_order:  # the Hessian term is there: first order differs
        fo = adapt_tasks(loss, params, support, **{**kw, "first_order": True})
        g_fo = torch.autograd.grad(task_losses(loss, fo, query).mean(), leaves)
        assert max((a - b).abs().max() for a, b in zip(g_vmap, g_fo)) > 1e-6


def test_cached_decoding_equals_the_full_pass_and_padding_changes_nothing():
    model = _tiny()
    p, shape = params_of(model), model.shape
    src, tgt = (x[0] for x in _tokens(1, torch.Generator().manual_seed(2)))
    tgt = tgt[:, :5].clamp_min(4)
    tgt[:, 0] = 2
    mem = memory(p, shape, src)
    full, _ = decode(p, shape, mem, tgt)
    cache, steps = None, []
    for t in range(tgt.shape[1]):
        out, cache = decode(p, shape, mem, tgt[:, t : t + 1], cache, last=True)
        steps.append(out)
    torch.testing.assert_close(torch.stack(steps, 1), full, rtol=0, atol=1e-12)
    padded = torch.cat([src, torch.zeros(4, 3, dtype=torch.long)], 1)
    torch.testing.assert_close(model(padded, tgt), model(src, tgt), rtol=0, atol=1e-12)


def test_beam_search_with_beam_one_is_greedy_and_translate_keeps_order():
    model = _tiny(torch.float32)
    with torch.no_grad():  # an output layer that ends sentences now and then
        model.target.weight[EOS] *= 4
    p, shape = params_of(model), model.shape
    g = torch.Generator().manual_seed(3)
    src = torch.randint(4, 13, (16, 7), generator=g)
    src[:, -1] = EOS
    src[::3, 4:] = 0
    caps = torch.randint(3, 12, (16,), generator=g)
    with torch.no_grad():
        a, b = greedy(p, shape, src, caps), beam_search(p, shape, src, caps, beam=1)
    assert torch.equal(a, b)
    ended = (a == EOS).float().argmax(1)
    assert (ended <= caps).all() and (a == EOS).any(1).all()
    assert (ended < caps).any()  # some end on their own, before their cap
    sources = [row[row != 0].tolist() for row in src]
    greedy_out = translate(p, shape, sources, beam=1, batch=5)
    assert greedy_out == translate(p, shape, sources, beam=1, batch=64)  # batching, order
    beam_out = translate(p, shape, sources, beam=4, batch=5)
    assert len(beam_out) == 16 and all(EOS not in h for h in beam_out)


def test_bleu_and_chrf_of_a_reference_against_itself_are_100():
    refs = ["The cat sat on the mat.", "Welsh AMs worried about 'looking like muppets'"]
    assert corpus_scores(refs, refs) == {"bleu": pytest.approx(100), "chrf++": pytest.approx(100)}
    worse = corpus_scores(["The dog sat.", "Welsh AMs"], refs)
    assert 0 <= worse["bleu"] < 100 and 0 < worse["chrf++"] < 100
    sig = signatures()
    assert sig["bleu"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    assert "nw:2" in sig["chrf++"]  # chrF++: word bigrams


def test_adam_rule_is_adam():
    w = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64, requires_grad=True)
    target = torch.tensor([0.3, 0.1, -0.7], dtype=torch.float64)
    optimizer = torch.optim.Adam([w], lr=0.1)
    rule, p = Adam(0.1), {"w": w.detach().clone()}
    state = rule.init(p)
    for _ in range(5):
        optimizer.zero_grad()
        ((w - target) ** 3).sum().backward()
        optimizer.step()
        p, state = rule.update(p, {"w": 3 * (p["w"] - target) ** 2}, state, torch.tensor(0.0))
    torch.testing.assert_close(p["w"], w.detach(), rtol=1e-7, atol=1e-9)


def test_finetune_stops_early_and_keeps_the_best_dev_params():
    """Steps pull w from 0 to 2 (w_t = 2 (1 - 0.98^t)); the dev score peaks at w = 0.5, which
    w passes between steps 14 and 15."""

    def loss(params, data):
        return ((params["w"] - 2.0) ** 2).sum()

    def dev(params):
        return -float((params["w"] - 0.5).abs())

    tuned = finetune(loss, {"w": torch.zeros((), dtype=torch.float64)}, SGD(0.01),
                     lambda step: None, dev, max_steps=200, eval_every=2, patience=3)
    assert tuned.step == 14 and tuned.params["w"].item() == pytest.approx(2 * (1 - 0.98 ** 14))
    assert [s for s, _ in tuned.curve] == list(range(0, 21, 2))  # 3 worse, then stopped
    assert tuned.dev == max(score for _, score in tuned.curve)


def test_metanmt_options():
    algo = MetaNMT()
    assert algo.first_order and isinstance(algo.rule({}, MetaConfig(inner_lr=1e-3)), Adam)
    algo = MetaNMT(second_order=True, inner_optimizer="sgd")
    assert not algo.first_order and isinstance(algo.rule({}, MetaConfig()), SGD)
    assert PRESETS["ntrex"][1].algo == MetaNMT() and PRESETS["ntrex"][1].task == NTREX()


# --- the commands -------------------------------------------------------------------------------


def _smoke(tmp_path: Path, cache_dir: str, algo=None, **task):
    base = PRESETS["ntrex-smoke"][1]
    name = algo.name if algo is not None else base.algo.name
    return replace(base, task=replace(base.task, cache_dir=cache_dir, **task),
                   algo=algo or base.algo, out=str(tmp_path / name))


SMALL_TEST = ["--translation.budgets", "0", "300", "--translation.seeds", "2",
              "--translation.max-steps", "2", "--translation.eval-every", "2",
              "--translation.dev-sentences", "4", "--translation.test-sentences", "4",
              "--translation.beam", "2"]


def test_smoke_preset_trains_and_meta_tests_every_method(tmp_path, cache_dir, capsys):
    """ntrex-smoke through the commands' code: MetaNMT, MultiNMT (pretrain) and scratch train,
    then the meta-test fine-tunes, decodes and scores each of them."""
    from metarl.algos.pretrain import Pretrain
    from metarl.algos.scratch import Scratch

    runs = [train.train(_smoke(tmp_path, cache_dir, algo), progress=False).parent
            for algo in (MetaNMT(), Pretrain(), Scratch())]
    first = load_checkpoint(runs[0])["state"]
    assert first["iteration"] == 3 and load_checkpoint(runs[2])["state"]["iteration"] == 0
    scratch = load_checkpoint(runs[2])["state"]["params"]
    torch.manual_seed(0)  # the scratch run is the seeded initialisation itself
    fresh = params_of(_smoke(tmp_path, cache_dir).task.build().model())
    assert all(torch.equal(scratch[k], fresh[k]) for k in fresh)
    assert any((scratch[k] != first["params"][k]).any() for k in scratch)  # MetaNMT learned
    out = tmp_path / "eval"
    capsys.readouterr()
    evaluate.main([*map(str, runs), "--out", str(out), *SMALL_TEST])
    printed = capsys.readouterr().out
    assert "ron-eng" in printed and "\nbleu: nrefs:1|" in printed and "\nchrf++: " in printed
    summary = json.loads((out / "results.json").read_text())
    assert set(summary["methods"]) == {"metanmt", "pretrain", "scratch"}
    assert summary["iterations"] == {"metanmt": 3, "pretrain": 3, "scratch": 0}
    for method in summary["methods"].values():
        assert len(method["ron"]["0"]) == 1 and len(method["ron"]["300"]) == 2
        for row in method["ron"]["300"]:
            assert row["tokens"] >= 300 and row["sentences"] > 5
            for key in ("bleu greedy", "chrf++ greedy", "bleu beam", "chrf++ beam"):
                assert 0 <= row[key] <= 100 and math.isfinite(row[key])
    csv = (out / "results.csv").read_text().splitlines()
    assert len(csv) == 1 + 3 * 2 and csv[1].startswith("ron,0,")


# --- bad input ----------------------------------------------------------------------------------


def _corpus(root: Path, lines: int = 120, **override: str) -> Path:
    """A small parallel folder in the shipped layout (English, deu, fra, ron; document ids),
    with ``override[language]`` as that file's text."""
    root.mkdir(parents=True)
    for source, language in (("src.eng", "eng"), *((f"ref.{x}", x) for x in ("deu", "fra",
                                                                               "ron"))):
        text = (SHARED / f"newstest2019-{source}.txt").read_text().splitlines()[:lines]
        (root / f"part.{language}.txt").write_text(override.get(language,
                                                                "\n".join(text) + "\n"))
    ids = (SHARED / "DOCUMENT_IDS.tsv").read_text().splitlines()[:lines]
    (root / "DOCUMENT_IDS.tsv").write_text("\n".join(ids) + "\n")
    return root


def test_users_own_parallel_data_trains(tmp_path, cache_dir):
    root = _corpus(tmp_path / "mine")
    config = _smoke(tmp_path, cache_dir, data_dir=str(root), shots=2, query=2)
    family = config.task.build()
    assert family.tag == "parallel-mine" and len(family.corpus.text["eng"]) == 120
    assert len(set(family.corpus.documents)) >= 3
    path = train.train(config, progress=False)
    assert load_checkpoint(path)["state"]["iteration"] == 3


@pytest.mark.parametrize("case, match", [
    ("language", "language 'xyz' is not in"),
    ("misaligned", "has 100 lines but part.eng.txt has 120; the files must be line-aligned"),
    ("empty", "part.fra.txt is empty"),
    ("documents", "DOCUMENT_IDS.tsv has 119 lines for 120 sentences"),
    ("missing", "no parallel data found"),
    ("no english", "has no English file"),
])
def test_bad_data_is_one_clear_line(tmp_path, cache_dir, one_clear_line, case, match):
    root = tmp_path / "data"
    fra = (SHARED / "newstest2019-ref.fra.txt").read_text().splitlines()
    argv = ["ntrex-smoke", "--task.data-dir", str(root), "--task.cache-dir", cache_dir,
            "--out", str(tmp_path / "run")]
    if case == "language":
        _corpus(root)
        argv += ["--task.languages", "xyz", "fra"]
    elif case == "misaligned":
        _corpus(root, fra="\n".join(fra[:100]) + "\n")
    elif case == "empty":
        _corpus(root, fra="\n\n")
    elif case == "documents":
        _corpus(root)
        ids = (root / "DOCUMENT_IDS.tsv").read_text().splitlines()
        (root / "DOCUMENT_IDS.tsv").write_text("\n".join(ids[:-1]) + "\n")
    elif case == "no english":
        _corpus(root)
        (root / "part.eng.txt").unlink()
    one_clear_line(train.main, argv, match)
    assert not (tmp_path / "run").exists()  # bad input leaves no run folder behind


def test_bad_meta_test_options_are_one_clear_line(tmp_path, cache_dir, one_clear_line):
    run = train.train(_smoke(tmp_path, cache_dir), progress=False).parent
    for argv, match in (
        (["--translation.budgets", "100000"], "--translation.budgets 100000 English tokens "
                                              "exceed the"),
        (["--translation.languages", "kor"], "'kor' is not a language of this run"),
        (["--translation.beam", "0"], "--translation.beam must be a positive integer"),
        (["--translation.lr", "-1"], "--translation.lr must be a positive number"),
    ):
        one_clear_line(evaluate.main, [str(run), *argv], match)
    with pytest.raises(Exception, match="shots"):
        NTREX(shots=0)
