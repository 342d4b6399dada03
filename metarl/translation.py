"""Translation at meta-test time (Gu et al., 2018, Section 5): fine-tuning with early stopping,
batched greedy and beam-search decoding, and corpus BLEU and chrF++ from sacrebleu.

Decoding runs the pure functions of :mod:`metarl.transformer` on a params dict, with each
decoder layer's keys and values cached, so a step costs one position.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from metarl.adapt import LossFn, adapt_step
from metarl.config import check, check_positive
from metarl.params import Params, detach
from metarl.rules import UpdateRule
from metarl.transformer import PAD, Memory, Shape, decode, memory

BOS, EOS = 2, 3
"""The special ids of every tokenizer here (sentencepiece: pad 0, unk 1, bos 2, eos 3)."""


# --- decoding -----------------------------------------------------------------------------------


def _repeat(mem: Memory, index: Tensor) -> Memory:
    return Memory(tuple(k[index] for k in mem.keys), tuple(v[index] for v in mem.values),
                  mem.bias[index])


def greedy(p: Params, shape: Shape, src: Tensor, caps: Tensor) -> Tensor:
    """Greedy decoding of a batch: ``src [B, S]``, ``caps [B]`` (at most this many tokens
    before EOS) -> ids ``[B, L]``, each ending in EOS then padding."""
    mem, cache = memory(p, shape, src), None
    token = torch.full((src.shape[0], 1), BOS, dtype=torch.long, device=src.device)
    done = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
    out = []
    for t in range(int(caps.max()) + 1):
        logits, cache = decode(p, shape, mem, token, cache, last=True)
        nxt = torch.where(t >= caps, EOS, logits.argmax(-1))
        nxt = torch.where(done, PAD, nxt)
        out.append(nxt)
        done = done | (nxt == EOS)
        token = nxt[:, None]
        if done.all():
            break
    return torch.stack(out, 1)


def beam_search(p: Params, shape: Shape, src: Tensor, caps: Tensor, beam: int,
                alpha: float = 1.0) -> Tensor:
    """Beam search of a batch, ``beam`` hypotheses per sentence, all sentences at once
    (``[B * beam]`` rows); of the ended hypotheses the best ``log p / length ** alpha`` is
    kept. A sentence stops once its most probable hypothesis has ended (log p only falls as a
    hypothesis grows); a stopped or ended hypothesis keeps its score. With ``beam=1`` this is
    :func:`greedy`. Shapes as :func:`greedy`."""
    b, k, device = src.shape[0], beam, src.device
    rows = torch.arange(b, device=device).repeat_interleave(k)
    mem, cache, caps = _repeat(memory(p, shape, src), rows), None, caps[rows]
    scores = torch.full((b, k), -math.inf, device=device)
    scores[:, 0] = 0.0  # the first step expands one hypothesis, not k copies of it
    token = torch.full((b * k, 1), BOS, dtype=torch.long, device=device)
    history = torch.zeros(b * k, 0, dtype=torch.long, device=device)
    ended = torch.zeros(b * k, dtype=torch.bool, device=device)
    frozen = ended.clone()
    length = torch.zeros(b * k, device=device)
    for t in range(int(caps.max()) + 1):
        logits, cache = decode(p, shape, mem, token, cache, last=True)
        logp = torch.log_softmax(logits.float(), -1)
        vocab = torch.arange(logp.shape[-1], device=device)
        logp = torch.where((t >= caps)[:, None] & (vocab != EOS), -math.inf, logp)
        logp = torch.where(frozen[:, None], torch.where(vocab == PAD, 0.0, -math.inf), logp)
        top, index = (scores.view(-1, 1) + logp).view(b, -1).topk(k, -1)
        parent = (torch.arange(b, device=device)[:, None] * k
                  + torch.div(index, logp.shape[-1], rounding_mode="floor")).view(-1)
        nxt = (index % logp.shape[-1]).view(-1)
        history = torch.cat([history[parent], nxt[:, None]], 1)
        length = length[parent] + (~frozen[parent]).float()
        ended = ended[parent] | (~frozen[parent] & (nxt == EOS))
        cache = tuple((ck[parent], cv[parent]) for ck, cv in cache)
        scores, token = top, nxt[:, None]
        frozen = ended | ended.view(b, k)[:, 0][rows]  # topk sorts: column 0 is the best
        if frozen.all():
            break
    best = torch.where(ended.view(b, k), scores / length.view(b, k) ** alpha, -math.inf)
    return history.view(b, k, -1)[torch.arange(b, device=device), best.argmax(-1)]


def pad(sequences: Sequence[Sequence[int]], device: torch.device | str = "cpu") -> Tensor:
    """Id lists -> ``[B, max length]`` padded with :data:`PAD`."""
    out = torch.full((len(sequences), max(1, max(map(len, sequences), default=1))), PAD,
                     dtype=torch.long)
    for i, s in enumerate(sequences):
        out[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
    return out.to(device)


def strip(ids: Tensor) -> list[list[int]]:
    """Decoded ``[B, L]`` -> each sentence's ids before its EOS."""
    out = []
    for row in ids.tolist():
        out.append(row[: row.index(EOS)] if EOS in row else [t for t in row if t != PAD])
    return out


def translate(p: Params, shape: Shape, sources: Sequence[Sequence[int]], beam: int = 1,
              batch: int = 64, alpha: float = 1.0, device: torch.device | str = "cpu"
              ) -> list[list[int]]:
    """Translate source id lists (each ending in EOS), ``batch`` sentences at a time in order
    of length (less padding); at most ``1.5 * length + 10`` tokens each. Returns the output
    ids without BOS/EOS, in the order given."""
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    out: list[list[int]] = [[] for _ in sources]
    with torch.no_grad():
        for start in range(0, len(order), batch):
            chunk = order[start : start + batch]
            src = pad([sources[i] for i in chunk], device)
            caps = torch.tensor([int(1.5 * len(sources[i])) + 10 for i in chunk], device=device)
            ids = (greedy(p, shape, src, caps) if beam == 1 else
                   beam_search(p, shape, src, caps, beam, alpha))
            for i, hyp in zip(chunk, strip(ids)):
                out[i] = hyp
    return out


# --- metrics ------------------------------------------------------------------------------------


def corpus_scores(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Corpus BLEU and chrF++ (sacrebleu's defaults; chrF++ is chrF with word bigrams)."""
    from sacrebleu.metrics import BLEU, CHRF

    refs = [list(references)]
    return {"bleu": BLEU().corpus_score(list(hypotheses), refs).score,
            "chrf++": CHRF(word_order=2).corpus_score(list(hypotheses), refs).score}


def chrf(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus chrF (the early-stopping score on the dev set)."""
    from sacrebleu.metrics import CHRF

    return CHRF().corpus_score(list(hypotheses), [list(references)]).score


def signatures() -> dict[str, str]:
    """sacrebleu's signatures of the metrics above (print them with every score)."""
    from sacrebleu.metrics import BLEU, CHRF

    out = {}
    for name, metric in (("bleu", BLEU()), ("chrf++", CHRF(word_order=2)),
                         ("chrf (dev)", CHRF())):
        metric.corpus_score(["a"], [["a"]])  # a signature names the references' count
        out[name] = str(metric.get_signature())
    return out


# --- fine-tuning with early stopping ------------------------------------------------------------


@dataclass(frozen=True)
class Finetuned:
    params: Params
    """The params of the best dev score."""
    step: int
    dev: float
    curve: tuple[tuple[int, float], ...]
    """(step, dev score) of every evaluation."""


def finetune(loss: LossFn, params: Params, rule: UpdateRule, batch: Callable[[int], Any],
             dev_score: Callable[[Params], float], *, max_steps: int, eval_every: int,
             patience: int) -> Finetuned:
    """Steps of ``rule`` on ``batch(step)`` from ``params``, scored on the dev set every
    ``eval_every`` steps (and before the first); stops after ``patience`` evaluations without
    a better score and returns the best params (early stopping)."""
    p, state = detach(params), rule.init(params)
    best = Finetuned(p, 0, dev_score(p), ())
    curve, worse = [(0, best.dev)], 0
    for step in range(1, max_steps + 1):
        p, state = adapt_step(loss, p, batch(step - 1), rule, state, first_order=True)
        p, state = detach(p), _detach_tree(state)
        if step % eval_every and step != max_steps:
            continue
        score = dev_score(p)
        curve.append((step, score))
        if score > best.dev:
            best, worse = Finetuned(p, step, score, ()), 0
        else:
            worse += 1
            if worse >= patience:
                break
    return Finetuned(best.params, best.step, best.dev, tuple(curve))


def _detach_tree(tree: Any) -> Any:
    if isinstance(tree, Tensor):
        return tree.detach()
    if isinstance(tree, Mapping):
        return {k: _detach_tree(v) for k, v in tree.items()}
    if isinstance(tree, (tuple, list)):
        return type(tree)(_detach_tree(v) for v in tree)
    return tree


@dataclass(frozen=True)
class TranslationTest:
    """The meta-test of translation runs (Gu et al. 2018, Section 5): each target language is
    fine-tuned from each run's parameters on random subsets of its training documents of a
    given number of English tokens, with early stopping on dev chrF, then decoded on its test
    documents (greedy and beam search) and scored with sacrebleu's BLEU and chrF++."""

    languages: tuple[str, ...] | None = None
    """Target languages (default: the task's targets)."""
    budgets: tuple[int, ...] = (0, 4000, 16000)
    """English tokens (whitespace words) of fine-tuning data; 0: no fine-tuning."""
    seeds: int = 3
    """Random subsets (and batch orders) per language and budget."""
    lr: float = 1e-3
    """Adam step size of the fine-tuning (every method alike)."""
    batch: int = 16
    """Sentences per fine-tuning step."""
    max_steps: int = 500
    """Most fine-tuning steps (early stopping usually ends sooner)."""
    eval_every: int = 50
    """Fine-tuning steps between dev evaluations."""
    patience: int = 3
    """Dev evaluations without improvement before stopping."""
    dev_sentences: int = 100
    """Dev sentences decoded (greedy) for early stopping: a fixed random subset."""
    test_sentences: int | None = None
    """Test sentences to score (default: all of the test documents)."""
    beam: int = 4
    """Beam width of the beam-search decoding (greedy decoding is scored too)."""
    alpha: float = 1.0
    """Beam search keeps the best log p / length ** alpha."""

    def __post_init__(self) -> None:
        check(isinstance(self.budgets, tuple) and len(self.budgets) > 0 and all(
            isinstance(b, int) and not isinstance(b, bool) and b >= 0 for b in self.budgets),
            f"--translation.budgets must be English token counts >= 0, got {self.budgets!r}")
        for name in ("seeds", "batch", "max_steps", "eval_every", "patience", "dev_sentences",
                     "beam"):
            value = getattr(self, name)
            check(isinstance(value, int) and not isinstance(value, bool) and value > 0,
                  f"--translation.{name.replace('_', '-')} must be a positive integer, got "
                  f"{value!r}")
        check(self.test_sentences is None or isinstance(self.test_sentences, int)
              and self.test_sentences > 0, "--translation.test-sentences must be a positive "
              f"integer, got {self.test_sentences!r}")
        check_positive("--translation.lr", self.lr, most=1.0)
        check(isinstance(self.alpha, (int, float)) and math.isfinite(self.alpha)
              and self.alpha >= 0,
              f"--translation.alpha must be a finite number >= 0, got {self.alpha!r}")


# --- the report ---------------------------------------------------------------------------------

SCORES = ("bleu greedy", "chrf++ greedy", "bleu beam", "chrf++ beam")
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
        9: 2.262}
"""Student's t quantiles (97.5%) by degrees of freedom: intervals over a few seeds."""


def interval(values: Sequence[float]) -> tuple[float, float]:
    """Mean and half-width of the 95% Student-t interval (NaN for a single value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, T975.get(n - 1, 1.96) * sd / math.sqrt(n)


def summary_rows(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per method, language and budget: ``(mean, half-width)`` of every recorded value
    over the seeds."""
    rows = []
    for method, by_lang in summary["methods"].items():
        for lang, by_budget in by_lang.items():
            for budget, runs in by_budget.items():
                row: dict[str, Any] = {"method": method, "language": lang,
                                       "budget": int(budget), "seeds": len(runs)}
                for key in runs[0]:
                    row[key] = interval([r[key] for r in runs])
                rows.append(row)
    return rows


def write_report(out_dir: str | Path, summary: Mapping[str, Any]) -> Path:
    """``results.json`` (every seed's scores, the options, sacrebleu's signatures) and
    ``results.csv`` (a row per method, language and budget: means and 95% half-widths)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    rows = summary_rows(summary)
    keys = [k for k in rows[0] if k not in ("method", "language", "budget", "seeds")]
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["language", "budget", "method", "seeds",
                    *(f"{k}_{s}" for k in keys for s in ("mean", "ci95"))])
        for r in sorted(rows, key=lambda r: (r["language"], r["budget"])):
            w.writerow([r["language"], r["budget"], r["method"], r["seeds"],
                        *(f"{v:.6g}" for k in keys for v in r[k])])
    return out


def print_report(summary: Mapping[str, Any]) -> None:
    """A table per target language: each method's scores by budget (mean ± 95% over seeds)."""
    rows = summary_rows(summary)
    width = max(10, *(len(r["method"]) + 1 for r in rows))
    print(f"Translation X->English on {summary['task']}: {summary['test_sentences']} test "
          f"sentences, BLEU and chrF++ after fine-tuning on budgets of English tokens "
          f"(mean ± 95% t-interval over {summary['seeds']} seeds; beam "
          f"{summary['options']['beam']})")
    for lang in summary["languages"]:
        print(f"\n{lang}-eng")
        print(f"{'budget':>7s} {'method':{width}s}" + "".join(f"{s:>18s}" for s in SCORES)
              + f"{'step':>7s}")
        for r in sorted((r for r in rows if r["language"] == lang),
                        key=lambda r: (r["budget"], list(summary["methods"]).index(r["method"]))):
            cells = "".join(f"{r[s][0]:>10.2f} ± {r[s][1]:<5.2f}" if not math.isnan(r[s][1])
                            else f"{r[s][0]:>10.2f}{'':8s}" for s in SCORES)
            print(f"{r['budget']:>7d} {r['method']:{width}s}{cells}{r['step'][0]:>7.0f}")
    for name, signature in summary["signatures"].items():
        print(f"{name}: {signature}")
