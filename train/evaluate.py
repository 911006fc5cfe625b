"""Translation quality scores (Vaswani et al., 2017, §6.1 reports BLEU).

The paper's BLEU was computed by tensor2tensor / `multi-bleu.perl` on tokenized text, which is
not comparable across papers (Post, 2018, "A Call for Clarity in Reporting BLEU Scores"). This
module reports:

- `score`: sacreBLEU BLEU on detokenized, cased text with the standard `13a` tokenization
  (`zh` for Chinese targets: every CJK character is a token), plus chrF, each with the
  sacreBLEU signature that makes it reproducible. Report these.
- `score_tokenized_lowercase`: BLEU on lowercased, Moses-tokenized text against the Multi30k
  `tok/` references, the convention of most published Multi30k results. Hypotheses go through
  the same pipeline as the references (`lowercase.perl | normalize-punctuation.perl -l L |
  tokenizer.perl -l L`, as `sacremoses`), then sacreBLEU with `tokenize="none"`.

Both take plain strings, so they are independent of the model and of generation.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sacrebleu.metrics import BLEU, CHRF

from train.lines import read_lines, write_text_atomic

BLEU_TOKENIZERS = {"zh": "zh"}
"""sacreBLEU tokenizer for a target language; any other language uses `13a`. (`ja-mecab` and
`ko-mecab` exist for Japanese and Korean but need MeCab, which is not a dependency.)"""


def score(hypotheses: Sequence[str], references: Sequence[str], tgt_lang: str) -> dict[str, Any]:
    """Corpus BLEU and chrF of detokenized `hypotheses` against one reference each.

    Returns `bleu`, `chrf` (0-100), their sacreBLEU signatures, and the BLEU details
    (n-gram precisions, brevity penalty, lengths).
    """
    _check_parallel(hypotheses, references)
    bleu_metric = BLEU(tokenize=BLEU_TOKENIZERS.get(tgt_lang, "13a"))
    chrf_metric = CHRF()
    bleu = bleu_metric.corpus_score(list(hypotheses), [list(references)])
    chrf = chrf_metric.corpus_score(list(hypotheses), [list(references)])
    return {
        "bleu": bleu.score,
        "bleu_signature": str(bleu_metric.get_signature()),
        "bleu_precisions": bleu.precisions,
        "bleu_brevity_penalty": bleu.bp,
        "hyp_len": bleu.sys_len,
        "ref_len": bleu.ref_len,
        "chrf": chrf.score,
        "chrf_signature": str(chrf_metric.get_signature()),
        "num_sentences": len(hypotheses),
    }


def score_tokenized_lowercase(
    hypotheses: Sequence[str], refs_tok_file: str | Path, lang: str | None = None, *, pretokenized: bool = False
) -> dict[str, Any]:
    """BLEU of detokenized `hypotheses` against lowercased, Moses-tokenized references.

    `refs_tok_file` is e.g. `multi30k/tok/test2016.en`; `lang` (for the Moses rules) defaults
    to its suffix. Scores are comparable with published Multi30k BLEU, not with `score`.

    `pretokenized`: the hypotheses already are such text (a model trained on the `tok/` files, data set
    `multi30k-lc-tok`), so they are scored as they are, as `multi-bleu.perl` scores published systems.
    Tokenising them again would escape their `&apos;` a second time.
    """
    path = Path(refs_tok_file)
    references = read_lines(path)
    _check_parallel(hypotheses, references)
    if pretokenized:
        tokenized, preprocessing = list(hypotheses), "none(model-outputs-lc-tok-text)"
    else:
        tokenized, preprocessing = (
            moses_tokenize_lowercase(hypotheses, lang or path.suffix.lstrip(".")),
            "moses-lc-norm-tok",
        )
    metric = BLEU(tokenize="none", force=True)
    bleu = metric.corpus_score(tokenized, [references])
    return {
        "bleu_tok_lc": bleu.score,
        "bleu_tok_lc_signature": f"{metric.get_signature()}|pre:{preprocessing}",
        "num_sentences": len(hypotheses),
    }


def moses_tokenize_lowercase(texts: Sequence[str], lang: str) -> list[str]:
    """Lowercase, normalize punctuation and Moses-tokenize (with XML escaping, as `tokenizer.perl`)."""
    try:
        from sacremoses import MosesPunctNormalizer, MosesTokenizer
    except ImportError as error:
        raise ImportError("score_tokenized_lowercase needs sacremoses: pip install sacremoses") from error
    normalizer, tokenizer = MosesPunctNormalizer(lang=lang), MosesTokenizer(lang=lang)
    return [tokenizer.tokenize(normalizer.normalize(text.lower()), escape=True, return_str=True) for text in texts]


def write_results(path: str | Path, results: Mapping[str, Any]) -> Path:
    """Write `results` as indented UTF-8 JSON, whole or not at all (parent folders are created);
    return the path."""
    return write_text_atomic(path, json.dumps(results, indent=2, ensure_ascii=False, sort_keys=True) + "\n")


def _check_parallel(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if not hypotheses:
        raise ValueError("nothing to score: no hypotheses")
