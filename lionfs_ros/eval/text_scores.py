"""How close the assistant's words are to the true narration, for responses matched to a truth.

Libraries, and why:
- sacrebleu (chrF and BLEU): the reference implementation that makes scores comparable across
  papers (fixed tokenization, reported signatures). chrF, on character n-grams, is the one to
  read for one-sentence narrations: it credits "cups" for "cup" and does not collapse to zero
  when a 4-gram is missing, as sentence BLEU does. BLEU is there because everyone asks for it;
  it is computed over the whole corpus of matched pairs, the way it is meant to be used.
- rapidfuzz (ROUGE-L): its LCSseq works on token lists in C++, which is exactly ROUGE-L's
  longest common subsequence, without pulling nltk and absl in through rouge-score.
Model-based scores (BERTScore and the like) would need weights downloaded at run time; the
teacher-forced LM metrics (stream_metrics) cover what the model itself thinks of the truth.
"""
from __future__ import annotations

import re
import statistics
from dataclasses import asdict, dataclass

PUNCTUATION = re.compile(r"[^\w\s]")


@dataclass(frozen=True)
class PairTextScore:
    chrf: float  # 0-100
    bleu: float  # 0-100, sentence level (effective order)
    rouge_l: float  # 0-1, F-measure
    exact: bool  # equal after lower-casing and dropping punctuation


@dataclass
class TextScores:
    pairs: int
    chrf: float | None  # corpus chrF, 0-100
    bleu: float | None  # corpus BLEU, 0-100
    rouge_l: float | None  # mean sentence ROUGE-L F, 0-1
    exact_match: float | None  # fraction of matched responses that say exactly the truth
    signature: str  # sacrebleu's signature of the chrF/BLEU settings

    def to_dict(self) -> dict:
        return asdict(self)


def normalize_tokens(text: str) -> list[str]:
    return PUNCTUATION.sub(" ", text.lower()).split()


def rouge_l(hypothesis: str, reference: str) -> float:
    from rapidfuzz.distance import LCSseq

    hyp, ref = normalize_tokens(hypothesis), normalize_tokens(reference)
    if not hyp or not ref:
        return 0.0
    common = LCSseq.similarity(hyp, ref)
    if not common:
        return 0.0
    precision, recall = common / len(hyp), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def _metrics():
    from sacrebleu.metrics import BLEU, CHRF

    return BLEU(effective_order=True), CHRF()


def score_pair(hypothesis: str, reference: str) -> PairTextScore:
    bleu, chrf = _metrics()
    return PairTextScore(
        chrf=chrf.sentence_score(hypothesis, [reference]).score,
        bleu=bleu.sentence_score(hypothesis, [reference]).score,
        rouge_l=rouge_l(hypothesis, reference),
        exact=normalize_tokens(hypothesis) == normalize_tokens(reference))


def score_corpus(hypotheses: list[str], references: list[str]) -> TextScores:
    """Corpus chrF/BLEU and mean ROUGE-L / exact match over matched (response, truth) pairs."""
    from sacrebleu.metrics import BLEU, CHRF

    if not hypotheses:
        return TextScores(0, None, None, None, None, "")
    bleu, chrf = BLEU(), CHRF()
    chrf_score = chrf.corpus_score(hypotheses, [references])
    bleu_score = bleu.corpus_score(hypotheses, [references])
    return TextScores(
        pairs=len(hypotheses), chrf=chrf_score.score, bleu=bleu_score.score,
        rouge_l=statistics.fmean(rouge_l(h, r) for h, r in zip(hypotheses, references)),
        exact_match=statistics.fmean(normalize_tokens(h) == normalize_tokens(r) for h, r in zip(hypotheses, references)),
        signature=f"chrF: {chrf.get_signature()} | BLEU: {bleu.get_signature()}")
