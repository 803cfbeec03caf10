"""A/B tests between a champion (A) and a challenger or canary (B): design, analysis, sequential testing.

- **Design:** the sample size per arm for a two-sided test of two proportions
  (baseline rate, an absolute minimum detectable effect) or of two means (standard
  deviation, effect), at significance `alpha` and `power`; and the days it takes at a
  given traffic per arm.
- **Fixed-horizon analysis**, valid when looked at once, at the planned size: the
  two-proportion z-test, Welch's t-test, and a seeded bootstrap interval for the
  difference in means.
- **Sequential analysis**, valid however often it is looked at: the mixture sequential
  probability ratio test (mSPRT; Johari, Pekelis and Walsh, "Always valid inference",
  2017). The difference of the arms' means, Z_n, is compared with a normal mixture of
  alternatives, effect ~ N(0, tau^2); the likelihood ratio

      L_n = sqrt(V_n / (V_n + tau^2)) * exp(tau^2 Z_n^2 / (2 V_n (V_n + tau^2))),

  with V_n the variance of Z_n, is a martingale under no difference, so by Ville's
  inequality P(L_n >= 1/alpha at any n) <= alpha. The always-valid p-value is the
  running minimum of 1 / L_n.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy import special, stats


class DesignError(ValueError):
    """The design's inputs cannot describe a test (a rate outside (0, 1), a non-positive effect, ...)."""


# The upper bounds (seconds) of the servers' flowline_request_latency_seconds histogram: an arm's latency counts
# are taken at them, from a prediction log as from Prometheus. Ten a decade (the R10 preferred numbers, 1.25 times
# apart), from 0.5 ms to 2.5 s: the latency guardrail counts answers above the bound at or over its threshold, and
# at the 2 to 2.5 times steps this histogram once had, a canary twice as slow was never found out.
LATENCY_BUCKETS = tuple(round(mantissa * 10.0 ** exponent, 8) for exponent in range(-4, 1)
                        for mantissa in (1, 1.25, 1.6, 2, 2.5, 3.15, 4, 5, 6.3, 8)
                        if 0.0005 <= mantissa * 10.0 ** exponent <= 2.5)
TAIL = 0.01  # the share of answers a p99 leaves above it


def _z(probability: float) -> float:
    return float(stats.norm.ppf(probability))


def _check_levels(alpha: float, power: float) -> None:
    if not 0 < alpha < 1:
        raise DesignError(f"alpha {alpha}: give a significance level between 0 and 1")
    if not 0 < power < 1:
        raise DesignError(f"power {power}: give a power between 0 and 1")


def proportion_sample_size(baseline_rate: float, mde: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Rows per arm for a two-sided two-proportion z-test to detect `baseline_rate` -> `baseline_rate + mde`."""
    _check_levels(alpha, power)
    if not 0 < baseline_rate < 1:
        raise DesignError(f"baseline rate {baseline_rate}: give a rate between 0 and 1")
    treated = baseline_rate + mde
    if mde == 0 or not 0 < treated < 1:
        raise DesignError(f"minimum detectable effect {mde}: baseline + effect must be a rate in (0, 1), "
                          "and the effect not 0")
    pooled = (baseline_rate + treated) / 2
    spread = (_z(1 - alpha / 2) * math.sqrt(2 * pooled * (1 - pooled))
              + _z(power) * math.sqrt(baseline_rate * (1 - baseline_rate) + treated * (1 - treated)))
    return math.ceil(spread ** 2 / mde ** 2)


def mean_sample_size(std: float, mde: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Rows per arm for a two-sided two-sample test of means with standard deviation `std` per row."""
    _check_levels(alpha, power)
    if std <= 0 or mde == 0:
        raise DesignError(f"std {std} and effect {mde}: give a positive standard deviation and a non-zero effect")
    return math.ceil(2 * (_z(1 - alpha / 2) + _z(power)) ** 2 * std ** 2 / mde ** 2)


def days_needed(rows_per_arm: int, daily_rows_per_arm: float) -> int:
    """Whole days until each arm has `rows_per_arm` rows."""
    if not (math.isfinite(daily_rows_per_arm) and daily_rows_per_arm > 0):
        raise DesignError(f"daily traffic {daily_rows_per_arm}: give the rows each arm gets per day, above 0")
    return math.ceil(rows_per_arm / daily_rows_per_arm)


@dataclass(frozen=True)
class Comparison:
    """B against A: the difference of means (B - A), its 95 % interval, and the test's two-sided p-value."""

    test: str
    difference: float
    ci95: tuple[float, float]
    p_value: float
    statistic: float


def _wilson(successes: int, rows: int, z: float) -> tuple[float, float]:
    """Wilson's score interval of one rate."""
    rate, z2 = successes / rows, z * z
    centre = (rate + z2 / (2 * rows)) / (1 + z2 / rows)
    half = z / (1 + z2 / rows) * math.sqrt(rate * (1 - rate) / rows + z2 / (4 * rows * rows))
    return centre - half, centre + half


def two_proportion_z_test(successes_a: int, rows_a: int, successes_b: int, rows_b: int) -> Comparison:
    """Pooled z-test of two rates; the interval of their difference is Newcombe's, from each rate's Wilson interval
    (the unpooled Wald interval it replaces had no width at a rate of 0 or 1: [-1, -1] beside p = 0.157)."""
    if min(rows_a, rows_b) < 1:
        raise DesignError("each arm needs at least one row")
    for arm, successes, rows in (("A", successes_a, rows_a), ("B", successes_b, rows_b)):
        if not 0 <= successes <= rows:
            raise DesignError(f"arm {arm}: {successes} successes in {rows} rows; give between 0 and the rows")
    rate_a, rate_b = successes_a / rows_a, successes_b / rows_b
    pooled = (successes_a + successes_b) / (rows_a + rows_b)
    pooled_se = math.sqrt(pooled * (1 - pooled) * (1 / rows_a + 1 / rows_b))
    z = (rate_b - rate_a) / pooled_se if pooled_se > 0 else 0.0
    (low_a, high_a), (low_b, high_b) = _wilson(successes_a, rows_a, _z(0.975)), _wilson(successes_b, rows_b, _z(0.975))
    difference = rate_b - rate_a
    interval = (difference - math.hypot(rate_b - low_b, high_a - rate_a),
                difference + math.hypot(high_b - rate_b, rate_a - low_a))
    return Comparison("two_proportion_z", difference, interval, float(2 * stats.norm.sf(abs(z))), float(z))


def welch_t_test(a: np.ndarray, b: np.ndarray) -> Comparison:
    """Welch's t-test of two means with unequal variances, and its Welch-Satterthwaite interval."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if min(len(a), len(b)) < 2:
        raise DesignError("each arm needs at least two rows")
    if a.std() == 0 and b.std() == 0:
        raise DesignError(f"both arms are constant ({a[0]:g} and {b[0]:g}): a t-test needs some variance")
    result = stats.ttest_ind(b, a, equal_var=False)
    low, high = result.confidence_interval(0.95)
    return Comparison("welch_t", float(b.mean() - a.mean()), (float(low), float(high)), float(result.pvalue),
                      float(result.statistic))


def bootstrap_difference_interval(a: np.ndarray, b: np.ndarray, seed: int, resamples: int = 2000,
                                  level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of mean(B) - mean(A), each arm resampled on its own."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if min(len(a), len(b)) < 1:
        raise DesignError("each arm needs at least one row")
    rng = np.random.default_rng(seed)
    differences = (b[rng.integers(0, len(b), (resamples, len(b)))].mean(axis=1)
                   - a[rng.integers(0, len(a), (resamples, len(a)))].mean(axis=1))
    tail = (1 - level) / 2 * 100
    return float(np.percentile(differences, tail)), float(np.percentile(differences, 100 - tail))


def msprt_p_values(differences: np.ndarray, variances: np.ndarray, tau: float) -> np.ndarray:
    """Always-valid p-values at each look: `differences` are Z_n (mean B - mean A so far), `variances`
    their variances V_n (sigma_A^2 / n_A + sigma_B^2 / n_B), `tau` the mixture's spread of effects
    (about the effect size worth detecting). Works on arrays of looks (last axis) for many experiments."""
    z, v = np.asarray(differences, dtype=float), np.asarray(variances, dtype=float)
    if tau <= 0:
        raise DesignError(f"tau {tau}: give the mixture's spread of effects, above 0")
    t2 = tau ** 2
    log_ratio = 0.5 * np.log(v / (v + t2)) + t2 * z ** 2 / (2 * v * (v + t2))
    return np.minimum.accumulate(np.minimum(1.0, np.exp(-log_ratio)), axis=-1)


def business_impact(rate_difference: float, rows: int, value_per_positive: float) -> float:
    """The value of a rate difference over `rows` rows, at `value_per_positive` each (for example churners
    kept times a customer's margin, from the use case's costs)."""
    return rate_difference * rows * value_per_positive


@dataclass(frozen=True)
class ArmOutcomes:
    """What one version served: requests, failed requests, good outcomes among the answered ones, p99 latency,
    and `outcomes`, the answered requests whose outcome (good or not) has arrived: None when all have.
    `latency_counts`: the answered requests that took at most each of LATENCY_BUCKETS (as the histogram's
    cumulative buckets count them); empty where not known, which leaves the latency guardrail out.

    An outcome (a customer retained, a payment not charged back) may arrive days after its answer, so a
    request whose outcome has not arrived is pending, neither good nor bad, and is left out of the success
    rate. A failed request is counted at once, as no good outcome: the model gave no answer to act on."""

    requests: int
    errors: int
    successes: int
    latency_p99_seconds: float
    version: str = ""
    outcomes: Optional[int] = None
    latency_counts: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        counts = {"requests": self.requests, "errors": self.errors, "successes": self.successes,
                  "outcomes": self.outcomes or 0}
        negative = [name for name, count in counts.items() if count < 0]
        if negative:
            raise DesignError(f"{self.version or 'an arm'}: {negative[0]} {counts[negative[0]]} is negative")
        if self.errors > self.requests:
            raise DesignError(f"{self.version or 'an arm'}: {self.errors} errors in {self.requests} requests")
        if self.outcomes is not None and self.outcomes > self.answered:
            raise DesignError(f"{self.version or 'an arm'}: {self.outcomes} outcomes arrived for {self.answered} "
                              "answered requests")
        counts = self.latency_counts
        if counts and (len(counts) != len(LATENCY_BUCKETS) or list(counts) != sorted(counts) or counts[0] < 0
                       or counts[-1] > self.answered):
            raise DesignError(f"{self.version or 'an arm'}: latency_counts {list(counts)}: give the answered "
                              f"requests at or below each of {list(LATENCY_BUCKETS)} s, at most {self.answered}")

    def slower_than(self, seconds: float) -> Optional[int]:
        """Answered requests that took longer than the smallest bucket bound at or above `seconds`: never more
        than took longer than `seconds` (0 above the last bound, where the counts cannot tell); None without
        counts."""
        if not self.latency_counts:
            return None
        index = int(np.searchsorted(LATENCY_BUCKETS, seconds))
        return self.answered - self.latency_counts[index] if index < len(LATENCY_BUCKETS) else 0

    @property
    def answered(self) -> int:
        return self.requests - self.errors

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def known(self) -> int:
        """Answered requests whose outcome has arrived."""
        return self.answered if self.outcomes is None else self.outcomes

    @property
    def pending(self) -> int:
        """Answered requests whose outcome has not arrived yet."""
        return max(self.answered - self.known, 0)

    @property
    def requests_judged(self) -> float:
        """The requests the success rate stands for: those whose outcome arrived, and the failed requests in the
        same proportion (all the requests, once every outcome has arrived)."""
        return self.known * self.requests / self.answered if self.answered else 0.0

    @property
    def success_rate(self) -> float:
        """Good outcomes per request, a failed request counting as none: the share of good outcomes among the
        answers whose outcome arrived, times the share of requests answered (successes / requests once every
        outcome has arrived)."""
        return self.successes / self.requests_judged if self.requests_judged else 0.0


class PolicyError(DesignError):
    """A CanaryPolicy field out of its range: `field`, and what to give instead (`advice`)."""

    def __init__(self, field: str, value, advice: str):
        super().__init__(f"{field} {value}: {advice}")
        self.field, self.advice = field, advice


@dataclass(frozen=True)
class CanaryPolicy:
    """When a canary is judged: guardrails first (errors, latency), then the sequential test of outcomes.
    A PolicyError when a field is out of range: a ratio below 1 rolls back canaries as good as their champion,
    and an alpha of 1 or more acts on any difference."""

    min_requests: int = 200  # per arm, before any decision but the error guardrail's (valid at every look)
    max_error_ratio: float = 2.0  # the canary's error rate may be at most this times the champion's (tested)
    max_latency_ratio: float = 1.5  # canary p99 over the champion's (tested)
    alpha: float = 0.05
    tau: float = 0.02  # the mSPRT's spread of effects: about the smallest difference in success rate worth acting on

    def __post_init__(self):
        ratio = "give 1 or more (1: no worse than the champion's)"
        for field, valid, advice in (
                ("min_requests", self.min_requests >= 1, "give at least 1"),
                ("max_error_ratio", 1 <= self.max_error_ratio < math.inf, ratio),
                ("max_latency_ratio", self.max_latency_ratio >= 1, ratio),
                ("alpha", 0 < self.alpha < 1, "give a significance level between 0 and 1"),
                ("tau", 0 < self.tau < math.inf, "give the smallest difference in success rate worth acting on, "
                                                   "above 0")):
            if not valid:
                raise PolicyError(field, getattr(self, field), advice)


def excess_share_p_value(events: int, trials: int, share: float) -> float:
    """Always-valid p-value of `events` among `trials` against "each is an event with probability at most
    `share`". The likelihood ratio of the trials against `share`, mixed over a uniform prior on probabilities from
    `share` to 1, is a supermartingale under that hypothesis, and its inverse a p-value valid at every look
    (Ville's inequality): a guardrail built on it may act from the first request and be looked at as often as
    wanted."""
    if events == 0 or trials == 0:
        return 1.0
    log_mixture = (special.betaln(events + 1, trials - events + 1)
                   + stats.beta.logsf(share, events + 1, trials - events + 1) - math.log1p(-share))
    log_null = events * math.log(share) + (trials - events) * math.log1p(-share)
    return float(min(1.0, math.exp(log_null - log_mixture)))


def excess_errors_p_value(champion: ArmOutcomes, canary: ArmOutcomes, max_ratio: float) -> float:
    """Always-valid p-value of the canary's errors against "its error rate is at most `max_ratio` times the
    champion's".

    Under that hypothesis each error, in the order they come, is the canary's with probability at most
    s = max_ratio x canary requests / (champion requests + max_ratio x canary requests) (two Poisson rates,
    conditioned on their sum; the traffic split fixes s): `excess_share_p_value` of the canary's errors among
    all. One error is no evidence: a 10 % canary's single error against none in 9,000 champion requests gives
    p = 0.31; its first 3 requests all failing against none in 27 of the champion's gives p = 0.02."""
    if champion.requests == 0:
        return 1.0
    weight = max_ratio * canary.requests
    return excess_share_p_value(canary.errors, canary.errors + champion.errors, weight / (champion.requests + weight))


def excess_latency(champion: ArmOutcomes, canary: ArmOutcomes, max_ratio: float) -> Optional[tuple[float, int, float]]:
    """The latency guardrail's test: (the threshold, `max_ratio` times the champion's p99; the canary's answers
    known slower than it; their always-valid p-value against "at most TAIL of them", which a canary p99 within
    the ratio leaves). None without latency counts. A p99 ratio of two samples is noise: two arms answering from
    one latency distribution, judged every 100 requests on their raw p99s, had a canary rolled back 20 % of the
    time (65 % with 1 % of 100 ms pauses), as a p99 of 200 answers is about their second slowest; counting
    the canary's slow answers against the share a p99 leaves tests what the ratio means."""
    threshold = max_ratio * champion.latency_p99_seconds
    slow = canary.slower_than(threshold)
    if slow is None:
        return None
    return threshold, slow, excess_share_p_value(slow, canary.answered, TAIL)


def canary_decision(champion: ArmOutcomes, canary: ArmOutcomes, policy: CanaryPolicy = CanaryPolicy()) -> dict:
    """promote, hold or rollback, with the reason and the numbers behind it.

    The success rates are compared on the requests whose outcome has arrived. A pending request is not a
    failure: a canary starts later than its champion, so fewer of its outcomes have arrived, and counting the
    missing ones as bad rolled back a better canary, or an equal one. How many are pending on each arm is
    in the numbers, and in the reason. This assumes an outcome that arrives late is as likely to be good as
    one that arrives early; where good outcomes arrive sooner than bad ones, judge requests old enough for
    their outcome to have arrived.

    The success rate is good outcomes per request, a failed request counting as none. Among answered requests
    only, a canary that fails the hard cases (whose outcomes are often worse) looks better by construction: one
    failing 19 % of its requests, against 10 %, and converting 26.4 % of them against 27.3 % was promoted,
    its error rate 1.9 times the champion's passing the guardrail. Per request, the errors and the outcomes
    are weighed together, in the quantity the business gets. With outcomes pending it is estimated as
    (good / arrived) x (answered / requests); its variance is taken as a proportion's over the requests it
    stands for, which is exact once every outcome has arrived and larger than the true one before
    (conservative).

    The success rates are compared with the mSPRT at this look only: 1 / L_n is at least
    the running minimum an always-valid p-value would report, so deciding on it is
    conservative, and the decision stays valid however often it is taken. So do the guardrails: each rolls back on
    an always-valid test (`excess_errors_p_value`, `excess_latency`). A promotion asks more of the errors than
    that no harm is shown: the canary's observed error rate must be within `max_error_ratio` of the champion's (a
    canary failing 3 % of 5,000 requests against 1 % was promoted on its better success rate, its excess not yet
    significant); above it the canary is held.
    """
    error_ratio = canary.error_rate / max(champion.error_rate, 1 / max(champion.requests, 1))
    error_p_value = excess_errors_p_value(champion, canary, policy.max_error_ratio)
    numbers = {"champion_error_rate": champion.error_rate, "canary_error_rate": canary.error_rate,
               "error_ratio": error_ratio, "error_p_value": error_p_value}
    if error_p_value <= policy.alpha:  # before min_requests too: a canary failing every request is not kept serving
        return {"decision": "rollback", "reason": f"error rate {canary.error_rate:.2%} is {error_ratio:.1f} times the "
                f"champion's, significantly more than {policy.max_error_ratio:g} times (always-valid p = "
                f"{error_p_value:.4f})", **numbers}
    if min(champion.requests, canary.requests) < policy.min_requests:
        return {"decision": "hold", "reason": f"fewer than {policy.min_requests} requests on an arm", **numbers}
    latency_ratio = canary.latency_p99_seconds / max(champion.latency_p99_seconds, 1e-9)
    numbers.update(latency_ratio=latency_ratio)
    if min(champion.answered, canary.answered) == 0:  # no latency to compare: a champion failing all is held
        return {"decision": "hold", "reason": "an arm answered no request", **numbers}
    latency = excess_latency(champion, canary, policy.max_latency_ratio)
    if latency is not None:
        threshold, slow, latency_p_value = latency
        numbers.update(canary_slow_share=slow / canary.answered, latency_p_value=latency_p_value)
        if latency_p_value <= policy.alpha:
            return {"decision": "rollback", "reason": f"{slow / canary.answered:.1%} of the canary's answers took over "
                    f"{threshold * 1000:.3g} ms, {policy.max_latency_ratio:g} times the champion's p99: significantly "
                    f"more than the {TAIL:.0%} a p99 within that leaves (always-valid p = {latency_p_value:.4f}; "
                    f"p99 {latency_ratio:.2f} times the champion's)", **numbers}
    if champion.successes > champion.known or canary.successes > canary.known:  # a success rate above 100 %
        return {"decision": "hold", "reason": "an arm has more good outcomes than answered requests whose outcome "
                "arrived: count outcomes per request, as requests are counted", **numbers}
    numbers.update(champion_pending=champion.pending, canary_pending=canary.pending)
    pending = (f"; outcomes not yet arrived, left out: {canary.pending:,} of the canary's requests and "
               f"{champion.pending:,} of the champion's" if champion.pending or canary.pending else "")
    if min(champion.known, canary.known) == 0:
        return {"decision": "hold", "reason": f"no outcome has arrived on an arm{pending}", **numbers}
    if champion.successes == champion.known and canary.successes == canary.known:
        return {"decision": "hold", "reason": "every outcome that arrived is good, on both arms: nothing to compare "
                "(are the bad ones reported too, as outcome 0 or outcome=\"failure\"?)", **numbers}
    rate_a, rate_b = champion.success_rate, canary.success_rate
    judged_a, judged_b = champion.requests_judged, canary.requests_judged
    pooled = (champion.successes + canary.successes) / (judged_a + judged_b)
    variance = max(pooled * (1 - pooled), 1e-12) * (1 / judged_a + 1 / judged_b)
    p_value = float(msprt_p_values(np.array([rate_b - rate_a]), np.array([variance]), policy.tau)[-1])
    numbers.update(champion_success_rate=rate_a, canary_success_rate=rate_b, p_value=p_value)
    if p_value > policy.alpha:
        return {"decision": "hold",
                "reason": f"no significant difference yet (always-valid p = {p_value:.3f}){pending}", **numbers}
    better = rate_b > rate_a
    compared = (f"success rate per request {rate_b:.2%} against the champion's {rate_a:.2%}, always-valid "
                f"p = {p_value:.4f}")
    errors = f"error rate {canary.error_rate:.2%}, {error_ratio:.1f} times the champion's"
    if better and error_ratio > policy.max_error_ratio:  # the guardrail has not shown harm, nor the canary safety
        return {"decision": "hold", "reason": f"{compared}, but its {errors}, above the limit of "
                f"{policy.max_error_ratio:g} (not yet significantly: always-valid p = {error_p_value:.4f}){pending}",
                **numbers}
    return {"decision": "promote" if better else "rollback", "reason": f"{compared}; {errors}{pending}", **numbers}
