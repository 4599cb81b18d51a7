"""Statistics of seeds: mean with a Student-t 95% interval, paired tests by seed, effect size.

Plain functions of lists of numbers (scipy for the t and Wilcoxon distributions); what goes in
is the caller's choice (``lab.experiments.results`` pairs runs by seed). ``None`` stands for a
number that does not exist (an interval from one value, a test without variation).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

CI_METHOD = "Student t, 95%"
PAIRED_TEST = "paired t-test (two-sided)"
RANK_TEST = "Wilcoxon signed-rank (two-sided)"
EFFECT_SIZE = "Cohen's d_z (mean difference / SD of differences)"


@dataclass(frozen=True)
class Summary:
    """Values of one group: n, mean, sample SD and the 95% interval of the mean."""

    n: int
    mean: float | None
    sd: float | None
    ci95: tuple[float, float] | None
    method: str = CI_METHOD


@dataclass(frozen=True)
class Paired:
    """A paired comparison of a and b (same seeds): differences a - b."""

    n_pairs: int
    mean_diff: float | None
    sd_diff: float | None
    ci95: tuple[float, float] | None   # of the mean difference, Student t
    t: float | None
    p_value: float | None              # the paired t-test's
    wilcoxon_p: float | None           # the signed-rank test's (exact: n <= 50 and no ties)
    cohens_dz: float | None
    test: str = PAIRED_TEST


def t_critical(df: int, level: float = 0.95) -> float:
    """The two-sided Student t quantile, e.g. 4.303 for df=2 at 95%."""
    from scipy import stats

    return float(stats.t.ppf(0.5 + level / 2, df))


def _finite(values: Sequence[float]) -> list[float]:
    out = [float(v) for v in values]
    bad = [v for v in out if not math.isfinite(v)]
    if bad:
        raise ValueError(f"values must be finite numbers; got {bad[0]!r}")
    return out


def mean_ci(values: Sequence[float], level: float = 0.95) -> Summary:
    """Mean, sample SD and the t interval mean ± t(n-1) · SD / sqrt(n); no interval below n=2."""
    xs = _finite(values)
    n = len(xs)
    if n == 0:
        return Summary(0, None, None, None)
    mean = statistics.fmean(xs)
    if n == 1:
        return Summary(1, mean, None, None)
    sd = statistics.stdev(xs)
    half = t_critical(n - 1, level) * sd / math.sqrt(n)
    return Summary(n, mean, sd, (mean - half, mean + half))


def paired(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Paired:
    """Paired comparison of equal-length ``a`` and ``b`` (pair i: the same seed)."""
    xs, ys = _finite(a), _finite(b)
    if len(xs) != len(ys):
        raise ValueError(f"paired values need equal lengths, got {len(xs)} and {len(ys)}")
    d = [x - y for x, y in zip(xs, ys, strict=True)]
    n = len(d)
    if n == 0:
        return Paired(0, None, None, None, None, None, None, None)
    mean = statistics.fmean(d)
    if n == 1:
        return Paired(1, mean, None, None, None, None, None, None)
    sd = statistics.stdev(d)
    if sd == 0:  # every pair differs by the same amount: no t, no effect size
        return Paired(n, mean, 0.0, (mean, mean), None, None, _wilcoxon(d), None)
    from scipy import stats

    se = sd / math.sqrt(n)
    t = mean / se
    p = float(2 * stats.t.sf(abs(t), n - 1))
    half = t_critical(n - 1, level) * se
    return Paired(n, mean, sd, (mean - half, mean + half), t, p, _wilcoxon(d), mean / sd)


def _wilcoxon(d: Sequence[float]) -> float | None:
    """Two-sided signed-rank p-value of the differences ``d`` (zeros dropped, as scipy's
    default): exact when there are no ties and at most 50 differences (a count of the 2^n sign
    patterns by rank sum: quick for the few seeds of a grid), else scipy's normal approximation.
    """
    nz = [x for x in d if x != 0]
    if not nz:
        return None  # all differences zero: the test is undefined
    n = len(nz)
    mags = sorted(abs(x) for x in nz)
    if len(set(mags)) < n or n > 50:
        import warnings

        from scipy import stats

        with warnings.catch_warnings():  # scipy warns that small-n approximations are rough
            warnings.simplefilter("ignore")
            return float(stats.wilcoxon(nz).pvalue)
    rank = {m: i + 1 for i, m in enumerate(mags)}
    w_plus = sum(rank[abs(x)] for x in nz if x > 0)
    top = n * (n + 1) // 2
    counts = [1] + [0] * top          # counts[s]: sign patterns whose positive ranks sum to s
    for r in range(1, n + 1):
        for s in range(top, r - 1, -1):
            counts[s] += counts[s - r]
    total = 2 ** n
    low = sum(counts[: w_plus + 1]) / total   # P(W+ <= w)
    high = sum(counts[w_plus:]) / total       # P(W+ >= w)
    return min(1.0, 2 * min(low, high))


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values (None stays None), for many comparisons at once."""
    indexed = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    m = len(indexed)
    out: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(indexed):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out
