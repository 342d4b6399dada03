"""Low-resource translation as meta-learning: MetaNMT (Gu et al., 2018, "Meta-Learning for
Low-Resource Neural Machine Translation") on NTREX-128 (Federmann, Kocmi & Xin, 2022).

A task is one X->English language pair. Its support and query sets are disjoint batches of
sentence pairs from the training documents; meta-training draws Gu et al.'s 18 European
languages, and the meta-test fine-tunes on the low-resource targets (ron lav fin tur kor).

Data: a folder of line-aligned files ``<name>.<language>.txt`` (one sentence per line; the
English file ``*.eng.txt``), optionally ``DOCUMENT_IDS.tsv`` with each line's document (else
every 20 lines are one document). NTREX-128 ships that way: 1,997 English news sentences of
123 documents, ``newstest2019-src.eng.txt`` and ``newstest2019-ref.<language>.txt``.

The documents are split once, with a seed, for every language (60/20/20 train/dev/test by
default), so no English sentence of a test document is ever seen in training. A joint BPE
vocabulary (sentencepiece) is trained on the training documents of every language used and
cached; training sentence pairs longer than ``max_len`` subwords on either side are left out
(test sentences are translated whatever their length). Gu et al.'s universal lexical
representation needs pretrained, aligned word vectors; here every language shares the one
subword embedding instead.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from tqdm import tqdm

from metarl.checkpoint import write_atomically
from metarl.config import check, check_nonnegative_int, check_positive_ints
from metarl.errors import ConfigError, DataError
from metarl.params import Params
from metarl.rules import Adam
from metarl.stats import Metric
from metarl.tasks import Forward, TaskBatch, loss_fn
from metarl.transformer import PAD, Shape, Transformer
from metarl.translation import (
    BOS,
    EOS,
    TranslationTest,
    chrf,
    corpus_scores,
    finetune,
    pad,
    signatures,
    translate,
)

META_TRAIN = ("bul", "ces", "dan", "deu", "ell", "spa", "est", "fra", "hun", "ita", "lit",
              "nld", "pol", "por", "slk", "slv", "swe", "rus")
"""Gu et al.'s 18 meta-training languages (Section 5.1)."""
TARGETS = ("ron", "lav", "fin", "tur", "kor")
"""Their five low-resource target languages."""
SPLITS = ("train", "dev", "test")
DOCUMENT_IDS = "DOCUMENT_IDS.tsv"
LINES_PER_DOCUMENT = 20
"""Document size where a folder has no DOCUMENT_IDS.tsv."""
CACHE_VERSION = 1


@dataclass(frozen=True)
class NTREX:
    """X->English translation tasks; also their config (every field is a CLI option)."""

    languages: tuple[str, ...] = META_TRAIN
    """Meta-training source languages (a task is one of them -> English)."""
    targets: tuple[str, ...] = TARGETS
    """Low-resource source languages of the meta-test."""
    shots: int = 16
    """Support sentence pairs per task."""
    query: int = 16
    """Query sentence pairs per task."""
    max_len: int = 80
    """Training pairs longer than this many subwords on either side are left out."""
    vocab_size: int = 8000
    """Source subwords: one BPE vocabulary (sentencepiece) of every source language, trained
    on their training documents."""
    english_vocab_size: int = 2000
    """Target subwords: a BPE vocabulary of the English training documents."""
    split: tuple[float, float] = (0.6, 0.2)
    """Fractions of the documents for training and dev; the rest are test documents."""
    split_seed: int = 1
    d_model: int = 64
    heads: int = 4
    ff: int = 256
    encoder_layers: int = 2
    decoder_layers: int = 2
    label_smoothing: float = 0.1
    """Of the training loss (Szegedy et al. 2016; the metrics are unsmoothed)."""
    eval_tasks: int = 20
    """Held-out tasks of metarl-evaluate's few-shot curve (token loss and accuracy)."""
    data_dir: str | None = None
    """Folder of line-aligned <name>.<language>.txt files; default: $METARL_DATA/ntrex,
    ./data/ntrex, ../shared/data/ntrex."""
    cache_dir: str | None = None
    """Where the tokenizer is cached (default: $METARL_CACHE or ~/.cache/metarl)."""
    english: str = "eng"
    """The target side's language code (its file is *.<english>.txt)."""

    metrics: ClassVar[tuple[Metric, ...]] = (
        Metric("loss"), Metric("accuracy", higher_is_better=True, label="token accuracy (%)",
                               decimals=(2, 2)))

    def __post_init__(self) -> None:
        check_positive_ints(self, ("shots", "query", "vocab_size", "english_vocab_size",
                                   "d_model", "heads", "ff",
                                   "encoder_layers", "decoder_layers", "eval_tasks"))
        check(isinstance(self.max_len, int) and self.max_len >= 4,
              f"max_len must be an integer >= 4, got {self.max_len!r}")
        check(self.d_model % self.heads == 0,
              f"d_model {self.d_model} must be a multiple of heads {self.heads}")
        for option in ("languages", "targets"):
            codes = getattr(self, option)
            check(isinstance(codes, tuple) and all(isinstance(c, str) and c for c in codes),
                  f"{option} must be language codes, got {codes!r}")
            check(len(set(codes)) == len(codes), f"{option} names a language twice: {codes}")
        check(len(self.languages) > 0, "languages must name at least one language")
        check(self.english not in (*self.languages, *self.targets),
              f"{self.english} is the target side; remove it from languages and targets")
        train, dev = self.split
        check(0 < train < 1 and 0 < dev < 1 and train + dev < 1,
              f"split must be (train, dev) fractions with train + dev < 1, got {self.split!r}")
        check(0 <= self.label_smoothing < 1,
              f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        check_nonnegative_int("split_seed", self.split_seed)

    @property
    def tag(self) -> str:
        return "ntrex" if self.data_dir is None else f"parallel-{Path(self.data_dir).name}"

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        return (self.d_model, self.heads, self.ff, self.encoder_layers, self.decoder_layers)

    def build(self) -> NTREXFamily:
        """Read and split the corpus, train (or load) the tokenizers, tokenize everything."""
        corpus = read_corpus(find_root(self.data_dir), (*self.languages, *self.targets),
                             self.english)
        lines = split_documents(corpus.documents, self.split, self.split_seed)
        source = [corpus.text[lang][i] for lang in (*self.languages, *self.targets)
                  for i in lines["train"]]
        english = [corpus.text[self.english][i] for i in lines["train"]]
        return NTREXFamily(self, corpus, lines,
                           tokenizer(source, self.vocab_size, self.cache_dir, "--task.vocab-size"),
                           tokenizer(english, self.english_vocab_size, self.cache_dir,
                                     "--task.english-vocab-size"))


# --- the corpus -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Corpus:
    root: Path
    text: Mapping[str, list[str]]
    """Each language's sentences, line-aligned (the English ones too)."""
    documents: list[str]
    """The document of each line."""
    files: Mapping[str, Path]


def candidate_roots(data_dir: str | None = None) -> list[Path]:
    """Where the data is looked for, in order."""
    if data_dir is not None:
        return [Path(data_dir).expanduser()]
    out = []
    if os.environ.get("METARL_DATA"):
        out.append(Path(os.environ["METARL_DATA"]) / "ntrex")
    repo = Path(__file__).resolve().parents[1]
    out += [Path("data/ntrex"), repo / "data/ntrex", repo.parent / "shared/data/ntrex"]
    return [p.expanduser() for p in out]


def find_root(data_dir: str | None = None) -> Path:
    candidates = candidate_roots(data_dir)
    for root in candidates:
        if root.is_dir() and any(root.glob("*.txt")):
            return root
    looked = ", ".join(str(p) for p in candidates)
    raise DataError(f"no parallel data found: looked for <name>.<language>.txt files in {looked}; "
                    "point --task.data-dir (or $METARL_DATA) at the folder holding them")


def language_files(root: Path) -> dict[str, Path]:
    """``{language: file}`` of the ``<name>.<language>.txt`` files in ``root``."""
    files: dict[str, Path] = {}
    for path in sorted(root.glob("*.txt")):
        parts = path.name.split(".")
        if len(parts) < 3:
            continue
        code = parts[-2]
        if code in files:
            raise DataError(f"{root} holds two files for language {code!r} ({files[code].name}, "
                            f"{path.name}); keep one")
        files[code] = path
    return files


def read_corpus(root: Path, languages: Sequence[str], english: str) -> Corpus:
    """The English file, the files of ``languages`` and the document ids, checked: each file
    present, non-empty and line-aligned with the English one."""
    files = language_files(root)
    if english not in files:
        raise DataError(f"{root} has no English file <name>.{english}.txt; a parallel corpus is "
                        f"one line-aligned <name>.<language>.txt file per language")
    missing = [lang for lang in languages if lang not in files]
    if missing:
        known = ", ".join(sorted(c for c in files if c != english)) or "none"
        raise ConfigError(f"language {missing[0]!r} is not in {root} (it holds {known}); "
                          "choose --task.languages and --task.targets among them or add "
                          f"<name>.{missing[0]}.txt")
    text = {}
    for lang in (english, *languages):
        lines = files[lang].read_text(encoding="utf-8").splitlines()
        if not any(line.strip() for line in lines):
            raise DataError(f"{files[lang]} is empty; it must hold one sentence per line")
        text[lang] = [line.strip() for line in lines]
    n = len(text[english])
    for lang in languages:
        if len(text[lang]) != n:
            raise DataError(f"{files[lang]} has {len(text[lang])} lines but "
                            f"{files[english].name} has {n}; the files must be line-aligned "
                            "(one sentence per line, the same sentences in the same order)")
    ids = root / DOCUMENT_IDS
    if ids.is_file():
        documents = [line.split("\t")[0].strip() for line in
                     ids.read_text(encoding="utf-8").splitlines()]
        if len(documents) != n:
            raise DataError(f"{ids} has {len(documents)} lines for {n} sentences; it must give "
                            "one document id per line of the language files")
    else:
        documents = [str(i // LINES_PER_DOCUMENT) for i in range(n)]
    return Corpus(root, text, documents, files)


def split_documents(documents: Sequence[str], fractions: tuple[float, float], seed: int
                    ) -> dict[str, list[int]]:
    """The lines of the training, dev and test documents: the documents (in order of first
    appearance) shuffled with ``seed``, the first ``fractions[0]`` for training, the next
    ``fractions[1]`` for dev, the rest for test."""
    names = list(dict.fromkeys(documents))
    if len(names) < 3:
        raise DataError(f"the corpus has {len(names)} document(s); splitting it into training, "
                        f"dev and test documents needs at least 3 (see {DOCUMENT_IDS})")
    order = torch.randperm(len(names), generator=torch.Generator().manual_seed(seed)).tolist()
    n_train = min(len(names) - 2, max(1, round(fractions[0] * len(names))))
    n_dev = min(len(names) - n_train - 1, max(1, round(fractions[1] * len(names))))
    part = {}
    for i, d in enumerate(order):
        part[names[d]] = 0 if i < n_train else 1 if i < n_train + n_dev else 2
    return {split: [i for i, doc in enumerate(documents) if part[doc] == s]
            for s, split in enumerate(SPLITS)}


# --- the tokenizer ------------------------------------------------------------------------------


def tokenizer(text: Sequence[str], vocab_size: int, cache_dir: str | None = None,
              option: str = "vocab_size") -> Any:
    """A BPE sentencepiece model of ``text`` (pad 0, unk 1, bos 2, eos 3, byte fallback so no
    character is unknown), cached by a hash of the text and settings; ``option`` names the
    vocabulary size in errors."""
    import sentencepiece as spm

    digest = hashlib.sha1(f"v{CACHE_VERSION}|{vocab_size}|".encode())
    for line in text:
        digest.update(line.encode())
        digest.update(b"\n")
    base = Path(cache_dir or os.environ.get("METARL_CACHE") or "~/.cache/metarl").expanduser()
    path = base / f"bpe{vocab_size}-{digest.hexdigest()[:12]}.model"
    if path.is_file():
        try:
            return spm.SentencePieceProcessor(model_file=str(path))
        except (OSError, RuntimeError):  # a truncated or foreign file: train again
            pass
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter([t for t in text if t]), model_writer=model,
            vocab_size=vocab_size, model_type="bpe", character_coverage=0.9995,
            pad_id=PAD, unk_id=1, bos_id=BOS, eos_id=EOS, byte_fallback=True, num_threads=1,
            minloglevel=2)
    except RuntimeError as e:
        why = str(e).strip().splitlines()[-1].split("] ")[-1].split(". Increase")[0]
        fix = "raise it" if "smaller than" in why else "lower it"
        raise ConfigError(f"{option} {vocab_size} does not fit the training text "
                          f"(sentencepiece: {why}); {fix}") from None
    write_atomically(path, lambda f: f.write(model.getvalue()))
    return spm.SentencePieceProcessor(model_proto=model.getvalue())


def english_tokens(sentence: str) -> int:
    """The budget's unit: whitespace-separated words of an English sentence."""
    return len(sentence.split())


# --- the task family ----------------------------------------------------------------------------


class NTREXFamily:
    """The tokenized, split corpus behind an :class:`NTREX` config."""

    metrics = NTREX.metrics

    def __init__(self, config: NTREX, corpus: Corpus, lines: dict[str, list[int]],
                 source: Any, english: Any) -> None:
        self.config, self.corpus, self.lines = config, corpus, lines
        self.source, self.english = source, english  # the sentencepiece models
        langs = (*config.languages, *config.targets)
        self.target_ids = [ids + [EOS] for ids in english.encode(corpus.text[config.english])]
        self.source_ids = {lang: [ids + [EOS] for ids in source.encode(corpus.text[lang])]
                           for lang in langs}
        text = corpus.text[config.english]
        # Usable pairs: both sides present and within the length limit.
        self.pools: dict[str, dict[str, list[int]]] = {
            lang: {split: [i for i in lines[split] if text[i] and corpus.text[lang][i]
                           and len(self.source_ids[lang][i]) <= config.max_len + 1
                           and len(self.target_ids[i]) <= config.max_len + 1]
                   for split in SPLITS} for lang in langs}
        need = config.shots + config.query
        for lang in langs:
            have = len(self.pools[lang]["train"])
            if have < need:
                raise DataError(f"{lang} has {have} training sentence pairs within --task.max-len "
                                f"{config.max_len}, fewer than shots + query = {need}; lower "
                                "--task.shots/--task.query or raise --task.max-len")

    @property
    def tag(self) -> str:
        return self.config.tag

    @property
    def eval_tasks(self) -> int:
        return self.config.eval_tasks

    eval_chunk: ClassVar[int] = 10

    @property
    def shape(self) -> Shape:
        c = self.config
        return Shape(self.source.get_piece_size(), self.english.get_piece_size(), c.d_model,
                     c.heads, c.ff, c.encoder_layers, c.decoder_layers)

    def model(self) -> nn.Module:
        return Transformer(self.shape)

    def pairs(self, lang: str, lines: Sequence[int]) -> tuple[Tensor, Tensor]:
        """Source ids ``[B, S]`` (ending in EOS) and English ids ``[B, T]`` (BOS ... EOS) of
        ``lines``, padded."""
        return (pad([self.source_ids[lang][i] for i in lines]),
                pad([[BOS, *self.target_ids[i]] for i in lines]))

    def sample(self, num_tasks: int, generator: torch.Generator, split: str = "train"
               ) -> TaskBatch:
        """``num_tasks`` tasks, each a language (distinct ones while there are enough):
        support and query ``(src [T, K, S], tgt [T, K, L])`` (token ids, padded alike); info
        ``{"language": [T]}`` (its index in ``languages``, or ``targets`` for test tasks) and
        ``{"lines": [T, K + Q]}`` (the corpus lines of support, then query).

        Training tasks draw support and query from the training documents; test tasks draw
        the support from a target's training documents and the query from its test documents.
        """
        check(split in ("train", "test"), f"unknown split {split!r}; use 'train' or 'test'")
        cfg = self.config
        langs = cfg.languages if split == "train" else cfg.targets
        check(len(langs) > 0, "the task has no target languages (--task.targets)")
        picks = torch.cat([torch.randperm(len(langs), generator=generator)
                           for _ in range(math.ceil(num_tasks / len(langs)))])[:num_tasks]
        k, q = cfg.shots, cfg.query
        src, tgt, used = [], [], []
        for lang in (langs[i] for i in picks.tolist()):
            pool = self.pools[lang]
            if split == "train":
                draw = torch.randperm(len(pool["train"]), generator=generator)[: k + q].tolist()
                lines = [pool["train"][i] for i in draw]
            else:
                check(len(pool["test"]) >= q, f"{lang} has {len(pool['test'])} test sentence "
                      f"pairs within --task.max-len, fewer than query = {q}; lower --task.query")
                s = torch.randperm(len(pool["train"]), generator=generator)[:k].tolist()
                t = torch.randperm(len(pool["test"]), generator=generator)[:q].tolist()
                lines = [pool["train"][i] for i in s] + [pool["test"][i] for i in t]
            x, y = self.pairs(lang, lines)
            used.append(lines)
            src.append(x)
            tgt.append(y)
        width_x, width_y = max(x.shape[1] for x in src), max(y.shape[1] for y in tgt)
        src = torch.stack([nn.functional.pad(x, (0, width_x - x.shape[1])) for x in src])
        tgt = torch.stack([nn.functional.pad(y, (0, width_y - y.shape[1])) for y in tgt])
        return TaskBatch((src[:, :k], tgt[:, :k]), (src[:, k:], tgt[:, k:]),
                         info={"language": picks, "lines": torch.tensor(used)})

    def loss(self, forward: Forward, params: Params, data: tuple[Tensor, Tensor]) -> Tensor:
        """Label-smoothed cross-entropy per target token (padding excluded) of teacher-forced
        decoding: ``data = (src [B, S], tgt [B, L])``."""
        return token_loss(forward, params, data, self.config.label_smoothing)

    def evaluate(self, forward: Forward, params: Params, data: tuple[Tensor, Tensor]
                 ) -> dict[str, Tensor]:
        """Per-token cross-entropy and accuracy (%) of teacher-forced decoding."""
        return {"loss": token_loss(forward, params, data),
                "accuracy": token_accuracy(forward, params, data)}

    # --- the meta-test -------------------------------------------------------------------------

    def budget_lines(self, lang: str, budget: int, seed: int) -> list[int]:
        """A random subset of ``lang``'s usable training pairs holding ``budget`` English
        tokens: the shortest prefix of a seeded shuffle that reaches it."""
        pool = self.pools[lang]["train"]
        order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed)).tolist()
        english, out, total = self.corpus.text[self.config.english], [], 0
        for i in order:
            if total >= budget:
                break
            out.append(pool[i])
            total += english_tokens(english[pool[i]])
        return out

    def check_budgets(self, languages: Sequence[str], budgets: Sequence[int]) -> None:
        english = self.corpus.text[self.config.english]
        for lang in languages:
            if lang not in self.source_ids:
                raise ConfigError(f"--translation.languages: {lang!r} is not a language of this "
                                  f"run (targets: {', '.join(self.config.targets)}; meta-"
                                  f"training: {', '.join(self.config.languages)})")
            have = sum(english_tokens(english[i]) for i in self.pools[lang]["train"])
            for budget in budgets:
                if budget > have:
                    raise ConfigError(
                        f"--translation.budgets {budget} English tokens exceed the {have:,} of "
                        f"{lang}'s training documents (pairs within --task.max-len "
                        f"{self.config.max_len}); lower the budget")

    def meta_test(self, starts: Mapping[str, tuple[nn.Module, Params]], options: TranslationTest,
                  device: str = "cpu") -> dict[str, Any]:
        """Fine-tune every start (``{method: (model, params)}``) on each target language, budget
        and seed, and score its test translations: the summary that
        :func:`metarl.translation.write_report` writes (budget 0, no fine-tuning, has one seed).
        """
        languages = options.languages or self.config.targets
        self.check_budgets(languages, options.budgets)
        results: dict[str, Any] = {m: {lang: {} for lang in languages} for m in starts}
        runs = [(lang, budget, seed) for lang in languages for budget in options.budgets
                for seed in range(1 if budget == 0 else options.seeds)]
        with tqdm(total=len(runs) * len(starts), desc="meta-test", unit="fine-tuning",
                  dynamic_ncols=True) as bar:
            for lang, budget, seed in runs:
                for method, (model, params) in starts.items():
                    row = self.finetune_and_score(model, params, lang, budget, seed, options,
                                                  device)
                    results[method][lang].setdefault(str(budget), []).append(row)
                    bar.update(1)
        return {"task": self.tag, "languages": list(languages), "budgets": list(options.budgets),
                "seeds": options.seeds, "dev_sentences": len(self.dev_lines(options)),
                "test_sentences": len(self.test_lines(options)), "options": _options(options),
                "signatures": signatures(), "methods": results}

    def dev_lines(self, options: TranslationTest) -> list[int]:
        """The dev sentences of early stopping: a fixed random subset of the dev documents."""
        return _subset(self.lines["dev"], options.dev_sentences, seed=0)

    def test_lines(self, options: TranslationTest) -> list[int]:
        return self.lines["test"][: options.test_sentences]

    def finetune_and_score(self, model: nn.Module, params: Params, lang: str, budget: int,
                           seed: int, options: TranslationTest, device: str = "cpu"
                           ) -> dict[str, float]:
        """One fine-tuning of ``params`` on ``budget`` English tokens of ``lang`` (subset and
        batch order drawn with ``seed``; Adam at ``options.lr``, early stopping on dev chrF),
        then BLEU and chrF++ of its greedy and beam-search test translations."""
        english, shape = self.corpus.text[self.config.english], model.shape
        lines, dev, test = (self.budget_lines(lang, budget, seed), self.dev_lines(options),
                            self.test_lines(options))
        dev_src = [self.source_ids[lang][i] for i in dev]

        def dev_score(p: Params) -> float:
            return chrf(self.detokenize(translate(p, shape, dev_src, device=device)),
                        [english[i] for i in dev])

        def batch(step: int) -> tuple[Tensor, Tensor]:
            return self._batch(lang, lines, step, options.batch, seed, device)

        tuned = finetune(loss_fn(self, model), params, Adam(options.lr), batch, dev_score,
                         max_steps=options.max_steps if budget else 0,
                         eval_every=options.eval_every, patience=options.patience)
        row = {"sentences": len(lines), "tokens": sum(english_tokens(english[i]) for i in lines),
               "step": tuned.step, "dev chrf": tuned.dev}
        test_src, refs = [self.source_ids[lang][i] for i in test], [english[i] for i in test]
        for decoding, beam in (("greedy", 1), ("beam", options.beam)):
            hyps = self.detokenize(translate(tuned.params, shape, test_src, beam,
                                             alpha=options.alpha, device=device))
            for metric, value in corpus_scores(hyps, refs).items():
                row[f"{metric} {decoding}"] = value
        return row

    def _batch(self, lang: str, lines: list[int], step: int, size: int, seed: int,
               device: str) -> tuple[Tensor, Tensor]:
        """Step ``step``'s fine-tuning batch: epochs of seeded shuffles of ``lines``."""
        per_epoch = max(1, math.ceil(len(lines) / size))
        epoch, i = divmod(step, per_epoch)
        order = torch.randperm(len(lines), generator=torch.Generator().manual_seed(
            1_000_003 * seed + epoch)).tolist()
        chosen = [lines[j] for j in order[i * size : (i + 1) * size]]
        src, tgt = self.pairs(lang, chosen)
        return src.to(device), tgt.to(device)

    def detokenize(self, ids: Sequence[Sequence[int]]) -> list[str]:
        return [self.english.decode(list(s)) for s in ids]


def _subset(lines: Sequence[int], n: int, seed: int) -> list[int]:
    order = torch.randperm(len(lines), generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(lines[i] for i in order[:n])


def _options(options: TranslationTest) -> dict[str, Any]:
    import dataclasses

    return {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}


def token_loss(forward: Forward, params: Params, data: tuple[Tensor, Tensor],
               smoothing: float = 0.0) -> Tensor:
    """Cross-entropy per target token of teacher-forced decoding (padding excluded),
    label-smoothed by ``smoothing``: ``data = (src [B, S], tgt [B, L])``."""
    src, tgt = data
    logits = forward(params, src, tgt[..., :-1])
    labels = tgt[..., 1:]
    # The fused loss: over a [tokens, vocabulary] matrix, the separate log-softmax, gather and
    # smoothing passes cost about 1.3x its time.
    total = nn.functional.cross_entropy(logits.flatten(0, -2), labels.flatten(),
                                        ignore_index=PAD, label_smoothing=smoothing,
                                        reduction="sum")
    return total / (labels != PAD).sum()


def token_accuracy(forward: Forward, params: Params, data: tuple[Tensor, Tensor]) -> Tensor:
    """Teacher-forced next-token accuracy (%), padding excluded."""
    src, tgt = data
    labels = tgt[..., 1:]
    mask = labels != PAD
    hits = (forward(params, src, tgt[..., :-1]).argmax(-1) == labels) & mask
    return 100 * hits.sum() / mask.sum()
