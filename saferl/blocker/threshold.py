"""Choosing the block threshold, what it promises, and measuring a Blocker at it.

The threshold is the highest one that still blocks every validation positive (zero false negatives there): the
Blocker blocks as little as it can without missing a block the overseer made. With ``misses`` m it blocks all but
the m lowest-scored: one or two blocks that no member scores anywhere near the rest (a rule's verdict the frame
does not show) otherwise pull the threshold down to nearly nothing; their promise counts them. Optionally a
safety margin lowers it further so that an extra fraction of the validation negatives is blocked too (a buffer
whose cost in false positives is fixed in advance).

What it promises (:func:`fn_rate_bound`): set below all n validation positives, the threshold misses a fresh
positive from the same distribution with probability p, where P(p > e) = (1 - e)^n (the lowest of n draws); so
with confidence 1 - delta, p <= 1 - delta^(1/n), and p <= 1/(n + 1) in expectation (the split-conformal bound).
Positives of one episode are correlated, so the bound is optimistic by about the number of positives an episode
holds together; it says how many validation positives a promise needs. Quality is reported on the test episodes:
the confusion table, false-positive rate, ROC AUC and a precision-recall plot.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from saferl.blocker.model import sigmoid
from saferl.errors import SaferlError


def zero_fn_threshold(logits: np.ndarray, positives: np.ndarray, margin: float = 0.0, misses: int = 0) -> float:
    """The highest logit threshold (block when logit >= it) with no false negative among ``logits`` (with
    ``misses``, with that many: the ``misses`` lowest-scored positives are let through).

    :param positives: which examples the overseer blocked.
    :param margin: lower the threshold further to also block this fraction of all negatives (the
        highest-scoring of those below it): a safety buffer whose false-positive cost is fixed.
    :param misses: positives the threshold may miss, the lowest-scored (see :func:`fn_rate_bound`).
    """
    logits, positives = np.asarray(logits, np.float64), np.asarray(positives, bool)
    if not positives.any():
        raise SaferlError("the validation episodes hold no blocks, so no zero-false-negative threshold can be set: "
                          "record more episodes")
    if not 0.0 <= margin < 1.0:
        raise SaferlError(f"the threshold margin must lie in [0, 1), not {margin} (--margin)")
    if not 0 <= misses < int(positives.sum()):
        raise SaferlError(f"--misses {misses}: the validation episodes hold {int(positives.sum())} blocks; the "
                          "threshold may miss fewer than that (0 misses none)")
    threshold = float(np.sort(logits[positives])[misses])
    below = np.sort(logits[~positives & (logits < threshold)])[::-1]
    extra = math.ceil(margin * int((~positives).sum()))
    if extra and len(below):
        threshold = float(below[min(extra, len(below)) - 1])
    return threshold


def fn_rate_bound(positives: int, confidence: float = 0.95, misses: int = 0) -> float:
    """The false-negative rate on fresh positives that a threshold below all ``positives`` validation positives
    (with ``misses``, above that many of them) stays under with ``confidence`` (see the module docstring); 1
    without more positives than misses.

    Set at the (m + 1)-th lowest of n positives, the threshold misses a fresh one with probability p where
    P(p > e) = P(Binomial(n, e) <= m); the bound is the e at which that is 1 - ``confidence`` (for m = 0,
    1 - (1 - confidence)^(1/n)), found by bisection."""
    if positives <= misses:
        return 1.0
    if misses == 0:
        return float(1.0 - (1.0 - confidence) ** (1.0 / positives))
    delta = 1.0 - confidence

    def at_most_misses(e: float) -> float:  # P(Binomial(positives, e) <= misses), in logs for large n
        terms = [math.lgamma(positives + 1) - math.lgamma(i + 1) - math.lgamma(positives - i + 1)
                 + i * math.log(e) + (positives - i) * math.log1p(-e) for i in range(misses + 1)]
        return sum(math.exp(t) for t in terms)

    low, high = 0.0, 1.0
    for _ in range(100):
        middle = (low + high) / 2
        if middle <= 0.0 or at_most_misses(middle) > delta:
            low = middle
        else:
            high = middle
    return float(high)


def roc_auc(logits: np.ndarray, positives: np.ndarray) -> float:
    """The area under the ROC curve (ties count half); NaN without both classes."""
    logits, positives = np.asarray(logits, np.float64), np.asarray(positives, bool)
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if not n_pos or not n_neg:
        return math.nan
    values, inverse, counts = np.unique(logits, return_inverse=True, return_counts=True)
    average_rank = np.cumsum(counts) - (counts - 1) / 2.0  # 1-based ranks, ties averaged
    rank_sum = average_rank[inverse][positives].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


@dataclass(frozen=True)
class Evaluation:
    """A Blocker's decisions at one threshold against the overseer's, on one set of examples."""

    examples: int
    positives: int
    true_positives: int
    false_negatives: int
    false_positives: int
    true_negatives: int
    false_positive_rate: float
    false_negative_rate: float
    precision: float
    auc: float
    threshold: float
    threshold_logit: float
    block_share: float = math.nan
    teacher_share: float = math.nan
    novel: int = 0

    def as_dict(self) -> dict[str, float | int | None]:
        """JSON-able figures (NaN, where a figure is undefined, becomes None)."""
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}

    def table(self) -> str:
        """The confusion table as text."""
        width = max(len(f"{n:,}") for n in (self.true_positives, self.false_negatives, self.false_positives,
                                            self.true_negatives, 1))
        rows = [f"{'':16}{'Blocker blocks':>{width + 16}}{'Blocker passes':>{width + 16}}",
                f"{'overseer blocked':16}{self.true_positives:>{width + 16},}{self.false_negatives:>{width + 16},}",
                f"{'overseer passed':16}{self.false_positives:>{width + 16},}{self.true_negatives:>{width + 16},}"]
        return "\n".join(rows)


def _ratio(a: int, b: int) -> float:
    return a / b if b else math.nan


def evaluate(logits: np.ndarray, positives: np.ndarray, threshold_logit: float,
             novel: np.ndarray | None = None) -> Evaluation:
    """The confusion counts, rates and ROC AUC of blocking at ``logits >= threshold_logit``, and in the ``novel``
    examples (None: none) blocking everything (see :func:`saferl.blocker.evaluate.decisions`)."""
    logits, positives = np.asarray(logits, np.float64), np.asarray(positives, bool)
    novel = np.zeros(len(logits), bool) if novel is None else np.asarray(novel, bool)
    blocked = (logits >= threshold_logit) | novel
    tp, fn = int((blocked & positives).sum()), int((~blocked & positives).sum())
    fp, tn = int((blocked & ~positives).sum()), int((~blocked & ~positives).sum())
    return Evaluation(
        examples=len(logits), positives=tp + fn, true_positives=tp, false_negatives=fn, false_positives=fp,
        true_negatives=tn, false_positive_rate=_ratio(fp, fp + tn), false_negative_rate=_ratio(fn, tp + fn),
        precision=_ratio(tp, tp + fp), auc=roc_auc(logits, positives),
        threshold=float(sigmoid(threshold_logit)), threshold_logit=float(threshold_logit),
        block_share=_ratio(tp + fp, len(logits)), teacher_share=_ratio(tp + fn, len(logits)), novel=int(novel.sum()),
    )


def plot_precision_recall(logits: np.ndarray, positives: np.ndarray, threshold_logit: float, path: str | Path,
                          title: str, novel: np.ndarray | None = None) -> Path:
    """Write the precision-recall curve with the operating point at ``threshold_logit`` as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    logits, positives = np.asarray(logits, np.float64), np.asarray(positives, bool)
    order = np.argsort(-logits, kind="stable")
    hits = np.cumsum(positives[order])
    precision = hits / np.arange(1, len(order) + 1)
    recall = hits / max(int(positives.sum()), 1)
    point = evaluate(logits, positives, threshold_logit, novel)
    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    ax.plot(recall, precision, lw=1.5, label=f"AUC(ROC) {point.auc:.4f}")
    ax.scatter([1.0 - point.false_negative_rate], [point.precision], color="red", zorder=3,
               label=f"threshold {point.threshold:.3g}: FN {point.false_negatives}, "
                     f"FPR {point.false_positive_rate:.2%}")
    ax.set(xlabel="recall (overseer's blocks caught)", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02),
           title=title)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
