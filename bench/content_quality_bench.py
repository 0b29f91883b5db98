"""Main-content quality on the ScrapingHub article-extraction benchmark: trafilatura, readability-lxml and the
app's ``shared.scraping.content.extract_content``, scored exactly as the benchmark's evaluate.py scores them.

The data is not in this repository; take a checkout of the benchmark (181 pages, `html/*.html.gz`, and
`ground-truth.json`):

    git clone https://github.com/scrapinghub/article-extraction-benchmark /tmp/aeb
    .venv/bin/pip install -r bench/requirements.txt
    .venv/bin/python bench/content_quality_bench.py --data /tmp/aeb

Scoring (evaluate.py, copied below): the text of each page and its ground truth `articleBody` are tokenised
with `\\w+`, cut into shingles of 4 consecutive tokens, and matched as multisets; each page's true/false
positives and false negatives are normalised to sum to 1 so that long articles weigh no more than short ones.
Precision and recall are the means over the pages (a page with no predicted shingle is left out of precision),
F1 is the harmonic mean of those two means, and ± is the standard deviation over bootstrap resamples of the
pages. When the checkout has the benchmark's stored outputs (output/readability.json, output/trafilatura.json)
they are scored too, to check this copy of the scoring against the published figures.

Contenders, each given the page's HTML string and its URL:
- trafilatura as the benchmark runs it: ``trafilatura.extract(html, include_comments=False)``;
- trafilatura in fast mode, as the app runs it (no readability/jusText fallback), its own text output (with
  links on, as the app needs them for Markdown, trafilatura's text output carries their targets as Markdown,
  so the app writes its own plain text instead);
- readability-lxml as the benchmark runs it: ``Document(html).summary(html_partial=True)`` through html-text;
- ``extract_content(html, url).text``: the app's bounded parse, trafilatura, its own plain text.
Recorded in bench/README.md, "Page content: extractor choice".
"""

import argparse
import gzip
import json
import random
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import html_text  # noqa: E402
import trafilatura  # noqa: E402
from readability import Document  # noqa: E402

from shared.scraping.content import extract_content  # noqa: E402

GOAL_F1 = 0.93
# README.rst of the benchmark at 4a3bc97 (F1, precision, recall).
PUBLISHED = {
    "readability-lxml 0.8.4.1": (0.922, 0.913, 0.931),
    "trafilatura 2.0.0": (0.958, 0.938, 0.978),
    "AutoExtract (Nov 2019)": (0.970, 0.984, 0.956),
}
STORED_OUTPUTS = {"readability": "readability-lxml", "trafilatura": "trafilatura"}
WORST = 5

TpFpFn = tuple[float, float, float]
Extractor = Callable[[str, str | None], str]


def benchmark_trafilatura(html: str, url: str | None) -> str:
    return trafilatura.extract(html, include_comments=False) or ""


def fast_trafilatura(html: str, url: str | None) -> str:
    return trafilatura.extract(html, url=url, fast=True, include_comments=False) or ""


def benchmark_readability(html: str, url: str | None) -> str:
    return str(html_text.extract_text(Document(html).summary(html_partial=True)))


def app_extract_content(html: str, url: str | None) -> str:
    return extract_content(html, url).text


EXTRACTORS: dict[str, Extractor] = {
    f"trafilatura {trafilatura.__version__}, as the benchmark runs it": benchmark_trafilatura,
    f"trafilatura {trafilatura.__version__}, fast (the app's cascade), its text": fast_trafilatura,
    f"readability-lxml {version('readability-lxml')}, as the benchmark runs it": benchmark_readability,
    "extract_content(...).text": app_extract_content,
}


# --- evaluate.py of the benchmark, as it is (typing added) ---------------------------------------------------
_TOKEN_RE = re.compile(r"\w+", re.UNICODE | re.MULTILINE | re.IGNORECASE | re.DOTALL)


def _tokenize(text: str) -> list[str]:
    return _TOKEN_RE.findall(text or "")


def _ngrams(text: str, n: int) -> list[tuple[str, ...]]:
    tokens = _tokenize(text)
    result = []
    for i in range(0, max(1, len(tokens) - n + 1)):
        shingle = tuple(tokens[i: i + n])
        if shingle:
            result.append(shingle)
    return result


def string_shingle_matching(true: str, pred: str, ngram_n: int = 4) -> TpFpFn:
    true_shingles = Counter(_ngrams(true, ngram_n))
    pred_shingles = Counter(_ngrams(pred, ngram_n))
    tp = fp = fn = 0.0
    for key in set(true_shingles) | set(pred_shingles):
        true_count = true_shingles.get(key, 0)
        pred_count = pred_shingles.get(key, 0)
        tp += min(true_count, pred_count)
        fp += max(0, pred_count - true_count)
        fn += max(0, true_count - pred_count)
    total = tp + fp + fn
    if total > 0:
        return tp / total, fp / total, fn / total
    return tp, fp, fn


def precision_score(tp: float, fp: float, fn: float) -> float:
    if fp == fn == 0:
        return 1.0
    if tp == fp == 0:
        return 0.0
    return tp / (tp + fp)


def recall_score(tp: float, fp: float, fn: float) -> float:
    if fp == fn == 0:
        return 1.0
    if tp == fn == 0:
        return 0.0
    return tp / (tp + fn)


def metrics_from_tp_fp_fns(tp_fp_fns: list[TpFpFn]) -> dict[str, float]:
    precision = statistics.mean([precision_score(*x) for x in tp_fp_fns if x[0] + x[1] > 0])
    recall = statistics.mean([recall_score(*x) for x in tp_fp_fns if x[0] + x[2] > 0])
    return {"f1": 2 * precision * recall / (precision + recall), "precision": precision, "recall": recall}


def get_accuracy(true: str, pred: str) -> float:
    return float(_tokenize(true) == _tokenize(pred))
# --- end of evaluate.py ---------------------------------------------------------------------------------------


def evaluate(truth: dict[str, dict[str, str]], predicted: dict[str, str], n_bootstrap: int) -> dict[str, object]:
    """evaluate.py's evaluate(): the metrics, their bootstrap standard deviations, and each page's scores."""
    keys = list(truth)
    scores = [string_shingle_matching(truth[key].get("articleBody", ""), predicted[key]) for key in keys]
    accuracies = [get_accuracy(truth[key].get("articleBody", ""), predicted[key]) for key in keys]
    metrics: dict[str, object] = {**metrics_from_tp_fp_fns(scores), "accuracy": statistics.mean(accuracies)}
    rng = random.Random(0)  # evaluate.py leaves the resampling unseeded; seeded, reruns print the same ±
    resampled: dict[str, list[float]] = {}
    for _ in range(n_bootstrap):
        indices = [rng.randint(0, len(scores) - 1) for _ in scores]
        for name, value in metrics_from_tp_fp_fns([scores[i] for i in indices]).items():
            resampled.setdefault(name, []).append(value)
        resampled.setdefault("accuracy", []).append(statistics.mean(accuracies[i] for i in indices))
    for name, values in resampled.items():
        metrics[f"{name}_std"] = statistics.stdev(values)
    metrics["pages"] = dict(zip(keys, scores, strict=True))
    return metrics


def page_f1(score: TpFpFn) -> float:
    precision, recall = (precision_score(*score) if score[0] + score[1] > 0 else 0.0), recall_score(*score)
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def load(data: Path) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    truth: dict[str, dict[str, str]] = json.loads((data / "ground-truth.json").read_text(encoding="utf8"))
    pages = {key: gzip.decompress((data / "html" / f"{key}.html.gz").read_bytes()).decode("utf8") for key in truth}
    return truth, pages


def run(extractor: Extractor, truth: dict[str, dict[str, str]], pages: dict[str, str]) -> tuple[dict[str, str], float]:
    """Every page's text, and the CPU milliseconds per page it took."""
    for key in list(pages)[:3]:
        extractor(pages[key], truth[key].get("url"))  # first-call set-up (justext's stoplists, regex caches)
    started = time.process_time()
    predicted = {key: extractor(html, truth[key].get("url")) for key, html in pages.items()}
    return predicted, (time.process_time() - started) * 1000 / len(pages)


def stored_outputs(data: Path) -> dict[str, dict[str, str]]:
    """The benchmark's own output files for the published contenders, where the checkout has them."""
    found = {}
    for stem, label in STORED_OUTPUTS.items():
        path = data / "output" / f"{stem}.json"
        if path.exists():
            stored = json.loads(path.read_text(encoding="utf8"))
            output = stored["output"] if set(stored) == {"version", "output"} else stored
            version = stored.get("version", "") if set(stored) == {"version", "output"} else ""
            found[f"{label} {version}, the benchmark's stored output"] = {
                key: value.get("articleBody") or "" for key, value in output.items()}
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a checkout of the article-extraction benchmark")
    parser.add_argument("--n-bootstrap", type=int, default=1000)
    args = parser.parse_args()
    truth, pages = load(args.data)
    results: dict[str, tuple[dict[str, object], float | None]] = {}
    for name, predicted in stored_outputs(args.data).items():
        results[name] = evaluate(truth, predicted, args.n_bootstrap), None
    for name, extractor in EXTRACTORS.items():
        predicted, cpu_ms = run(extractor, truth, pages)
        results[name] = evaluate(truth, predicted, args.n_bootstrap), cpu_ms
    print(f"{len(pages)} pages; goal F1 >= {GOAL_F1}\n")
    print("| extractor | F1 | precision | recall | accuracy | CPU ms/page |")
    print("|---|---|---|---|---|---:|")
    for name, (metrics, cpu) in results.items():
        cells = " | ".join(f"{metrics[key]:.3f} ± {metrics[key + '_std']:.3f}"
                           for key in ("f1", "precision", "recall", "accuracy"))
        print(f"| {name} | {cells} | {'-' if cpu is None else f'{cpu:.1f}'} |")
    for name, (f1, precision, recall) in PUBLISHED.items():
        print(f"| {name}, published | {f1:.3f} | {precision:.3f} | {recall:.3f} | | |")
    for name in EXTRACTORS:
        scores: dict[str, TpFpFn] = results[name][0]["pages"]  # type: ignore[assignment]
        print(f"\nWorst {WORST}, {name}:")
        for key in sorted(scores, key=lambda key: page_f1(scores[key]))[:WORST]:
            score = scores[key]
            print(f"- {key[:12]} F1 {page_f1(score):.3f} (P {precision_score(*score):.3f}, "
                  f"R {recall_score(*score):.3f}) {truth[key].get('url', '')}")


if __name__ == "__main__":
    main()
