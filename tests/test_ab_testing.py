"""A/B test design and analysis: textbook sample sizes, simulated error rates, a valid sequential test."""

import json
import math
import re

import numpy as np
import pytest
from scipy import stats

from flowline.ab_testing import (
    LATENCY_BUCKETS,
    ArmOutcomes,
    CanaryPolicy,
    DesignError,
    bootstrap_difference_interval,
    business_impact,
    canary_decision,
    days_needed,
    mean_sample_size,
    msprt_p_values,
    proportion_sample_size,
    two_proportion_z_test,
    welch_t_test,
)
from flowline.canary import arms_from_logs
from flowline.inference_services.local_server import free_port
from flowline.pipelines.cli import main

ALPHA = 0.05
EXPERIMENTS = 1000


def binomial_margin(rate: float, trials: int) -> float:
    """Three standard errors of a simulated rate: the slack a correct procedure needs."""
    return 3 * math.sqrt(rate * (1 - rate) / trials)


def test_sample_sizes_match_the_textbook_formulas():
    # 10 % -> 12 %, alpha 0.05 two-sided, power 0.8: 3,841 per arm (Evan Miller's calculator, Fleiss' formula).
    assert proportion_sample_size(0.10, 0.02) == 3841
    assert proportion_sample_size(0.10, -0.02) == proportion_sample_size(0.10, -0.02, 0.05, 0.8)
    assert proportion_sample_size(0.10, 0.02, power=0.9) > 3841 > proportion_sample_size(0.10, 0.04)
    # means: 2 (z_0.975 + z_0.8)^2 sigma^2 / delta^2 = 392.4 for sigma 1, delta 0.2
    assert mean_sample_size(1.0, 0.2) == 393
    assert days_needed(3841, 500) == 8
    for bad in (lambda: proportion_sample_size(1.2, 0.02), lambda: proportion_sample_size(0.95, 0.1),
                lambda: proportion_sample_size(0.1, 0.0), lambda: mean_sample_size(0.0, 1.0),
                lambda: proportion_sample_size(0.1, 0.02, alpha=1.5), lambda: days_needed(10, 0)):
        with pytest.raises(DesignError):
            bad()


def simulate_looks(rng, rate_a: float, rate_b: float, batch: int, looks: int):
    """Cumulative successes of both arms after each batch, for EXPERIMENTS experiments."""
    a = rng.binomial(batch, rate_a, (EXPERIMENTS, looks)).cumsum(axis=1)
    b = rng.binomial(batch, rate_b, (EXPERIMENTS, looks)).cumsum(axis=1)
    rows = batch * np.arange(1, looks + 1)
    return a, b, rows


def sequential_p_values(a, b, rows, tau: float) -> np.ndarray:
    pooled = (a + b) / (2 * rows)
    variance = np.maximum(pooled * (1 - pooled), 1e-12) * 2 / rows
    return msprt_p_values(b / rows - a / rows, variance, tau)


def naive_p_values(a, b, rows) -> np.ndarray:
    pooled = (a + b) / (2 * rows)
    z = (b - a) / rows / np.sqrt(np.maximum(pooled * (1 - pooled), 1e-12) * 2 / rows)
    return 2 * stats.norm.sf(np.abs(z))


def test_aa_experiments_with_peeking_every_batch_keep_the_sequential_test_under_alpha():
    """1,000 A/A experiments, looked at after each of 20 batches: the mSPRT rejects at most alpha of them
    (plus simulation slack); the fixed-horizon z-test, looked at the same way, rejects far more."""
    rng = np.random.default_rng(7)
    a, b, rows = simulate_looks(rng, 0.2, 0.2, batch=100, looks=20)
    sequential = (sequential_p_values(a, b, rows, tau=0.05) <= ALPHA).any(axis=1).mean()
    naive = (naive_p_values(a, b, rows) <= ALPHA).any(axis=1).mean()
    once = (naive_p_values(a, b, rows)[:, -1] <= ALPHA).mean()  # looked at once, at the end: valid
    assert sequential <= ALPHA + binomial_margin(ALPHA, EXPERIMENTS)
    assert naive > ALPHA + binomial_margin(ALPHA, EXPERIMENTS)  # peeking inflates it (to about 0.25)
    assert abs(once - ALPHA) <= binomial_margin(ALPHA, EXPERIMENTS)


def test_power_with_a_known_effect_is_what_the_design_promised():
    rng = np.random.default_rng(11)
    n = proportion_sample_size(0.20, 0.03, ALPHA, 0.8)
    a, b = rng.binomial(n, 0.20, EXPERIMENTS), rng.binomial(n, 0.23, EXPERIMENTS)
    power = np.mean([two_proportion_z_test(x, n, y, n).p_value <= ALPHA for x, y in zip(a, b)])
    assert abs(power - 0.8) <= binomial_margin(0.8, EXPERIMENTS)
    # The sequential test, looking every 10 % of the way to twice the planned size, finds it too.
    a, b, rows = simulate_looks(rng, 0.20, 0.23, batch=n // 5, looks=10)
    assert (sequential_p_values(a, b, rows, tau=0.03) <= ALPHA).any(axis=1).mean() > 0.7


def test_msprt_p_values_never_rise_and_fall_with_evidence():
    p = msprt_p_values(np.array([0.0, 0.01, 0.05, 0.02]), np.array([1e-3, 5e-4, 2.5e-4, 1.25e-4]), tau=0.05)
    assert np.all(np.diff(p) <= 0) and p[0] == 1.0 and p[2] < 0.05
    with pytest.raises(DesignError):
        msprt_p_values(np.zeros(2), np.ones(2), tau=0)


def test_fixed_horizon_tests_against_their_definitions():
    result = two_proportion_z_test(200, 1000, 250, 1000)
    pooled = 450 / 2000
    z = 0.05 / math.sqrt(pooled * (1 - pooled) * 2 / 1000)
    assert result.statistic == pytest.approx(z) and result.p_value == pytest.approx(2 * stats.norm.sf(z))
    assert result.ci95[0] < 0.05 < result.ci95[1] and result.difference == pytest.approx(0.05)
    # Newcombe's interval (its method 10), against a value worked from its paper's example: 56/70 against 48/80
    newcombe = two_proportion_z_test(48, 80, 56, 70)
    assert newcombe.ci95 == pytest.approx((0.0524, 0.3339), abs=1e-4)
    assert two_proportion_z_test(0, 1, 1, 1).ci95 == pytest.approx((-0.1221, 1.0), abs=1e-4)  # Wald gave [1, 1]
    rng = np.random.default_rng(3)
    a, b = rng.normal(10, 1, 300), rng.normal(10.3, 3, 200)
    welch = welch_t_test(a, b)
    assert welch.p_value == pytest.approx(stats.ttest_ind(b, a, equal_var=False).pvalue)
    low, high = bootstrap_difference_interval(a, b, seed=0)
    assert low < b.mean() - a.mean() < high
    assert abs((high - low) - (welch.ci95[1] - welch.ci95[0])) < 0.15  # two ways to the same interval
    assert business_impact(0.02, 10_000, 450.0) == pytest.approx(90_000.0)


@pytest.mark.parametrize("call, said", [
    (lambda: two_proportion_z_test(5, 3, 1, 10), "arm A: 5 successes in 3 rows"),  # was a math domain error
    (lambda: two_proportion_z_test(1, 10, -1, 10), "arm B: -1 successes in 10 rows"),  # was p = 0.002
    (lambda: welch_t_test(np.ones(5), np.ones(5)), "both arms are constant (1 and 1)"),  # was p = NaN
    (lambda: welch_t_test(np.ones(5), np.zeros(5)), "both arms are constant (1 and 0)"),  # was p = 0, t = -inf
    (lambda: bootstrap_difference_interval(np.array([]), np.ones(3), seed=0), "each arm needs at least one row"),
    (lambda: ArmOutcomes(requests=100, errors=120, successes=0, latency_p99_seconds=0.1, version="v2"),
     "v2: 120 errors in 100 requests"),  # was judged as a 120 % error rate
    (lambda: ArmOutcomes(requests=1000, errors=0, successes=10, latency_p99_seconds=0.1, outcomes=2000),
     "an arm: 2000 outcomes arrived for 1000 answered requests"),
    (lambda: ArmOutcomes(requests=10, errors=-1, successes=0, latency_p99_seconds=0.1), "errors -1 is negative"),
])
def test_counts_no_arm_can_have_are_refused_naming_them(call, said):
    with pytest.raises(DesignError, match=re.escape(said)):
        call()


def test_flowline_ab_design_prints_the_sample_size(capsys):
    assert main(["ab", "design", "--baseline-rate", "0.1", "--mde", "0.02", "--json"]) == 0
    design = json.loads(capsys.readouterr().out)
    assert design["n_per_arm"] == 3841 and design["alpha"] == 0.05 and design["power"] == 0.8
    assert main(["ab", "design", "--baseline-rate", "0.1", "--mde", "0.02", "--daily-rows-per-arm", "500"]) == 0
    shown = capsys.readouterr().out
    assert "3,841 rows per arm" in shown and "8 days" in shown
    assert "`flowline canary analyze` decides with a sequential test" in shown  # which that size does not power
    assert main(["ab", "design", "--baseline-rate", "1.5", "--mde", "0.02"]) == 1
    assert "baseline rate 1.5" in capsys.readouterr().err
    for traffic in ("nan", "0"):  # no days can be worked out: said in one line, not a traceback or silence
        assert main(["ab", "design", "--baseline-rate", "0.1", "--mde", "0.02", "--daily-rows-per-arm", traffic]) == 1
        assert f"daily traffic {float(traffic)}: give the rows each arm gets per day" in capsys.readouterr().err


def test_a_champion_failing_every_request_holds_its_canary_rather_than_rolling_it_back():
    down = ArmOutcomes(requests=1000, errors=1000, successes=0, latency_p99_seconds=0.0)
    healthy = ArmOutcomes(requests=1000, errors=0, successes=300, latency_p99_seconds=0.02)
    decided = canary_decision(down, healthy, CanaryPolicy())
    assert decided["decision"] == "hold" and decided["reason"] == "an arm answered no request"


def arm(requests=2004, errors=4, successes=None, p99=0.05, rate=0.30, slow=0):
    """An arm answering within 50 ms, but for `slow` answers of 200 ms."""
    answered = requests - errors
    counts = tuple(answered - (slow if bound < 0.2 else 0) if bound >= 0.05 else 0 for bound in LATENCY_BUCKETS)
    return ArmOutcomes(requests, errors, round(answered * rate) if successes is None else successes, p99,
                       latency_counts=counts)


@pytest.mark.parametrize("champion, canary, decision, said", [
    (arm(), arm(requests=150), "hold", "fewer than 200 requests"),
    # The error guardrail is valid at every look, so it needs no minimum: a canary failing each of its first 15
    # requests is rolled back, where it held until it had served 200 (2,000 requests at 10 %); one failure is not.
    (arm(requests=135, errors=0), arm(requests=15, errors=15), "rollback", "100.00% is 135.0 times the champion's"),
    (arm(requests=135, errors=0), arm(requests=15, errors=1), "hold", "fewer than 200 requests"),
    (arm(), arm(errors=64), "rollback", "error rate 3.19% is 16.0 times the champion's, significantly more"),
    # One error of a 10 % canary against none in 9,000 champion requests is no evidence of a worse error rate.
    (arm(requests=9000, errors=0), arm(requests=1000, errors=1), "hold", "no significant difference yet"),
    (arm(requests=9000, errors=0), arm(requests=1000, errors=10), "rollback", "significantly more than 2 times"),
    (arm(successes=600), arm(successes=2100), "hold", "more good outcomes than answered requests"),
    # 600 good of 300 arrived: a 200 % success rate was promoted (the review of this stop)
    (arm(), ArmOutcomes(2000, 0, 600, 0.05, outcomes=300), "hold", "more good outcomes than answered requests"),
    (arm(), ArmOutcomes(2004, 4, 0, 0.05, outcomes=0), "hold", "no outcome has arrived on an arm; outcomes not yet "
     "arrived, left out: 2,000 of the canary's requests and 0 of the champion's"),
    (arm(rate=1.0), arm(rate=1.0), "hold", "every outcome that arrived is good, on both arms"),
    # 4 % of the canary's answers over 1.5 times the champion's p99, where a p99 within that leaves 1 %.
    (arm(), arm(p99=0.2, slow=80), "rollback", "4.0% of the canary's answers took over 75 ms, 1.5 times the "
     "champion's p99: significantly more than the 1% a p99 within that leaves (always-valid p = 0.0000; p99 4.00"),
    # 1.2 %: its p99 is over 1.5 times the champion's in this sample, but no evidence that it is in truth.
    (arm(), arm(p99=0.2, slow=24), "hold", "no significant difference yet"),
    # 3 times the champion's errors and better outcomes: not yet significantly above the limit, nor within it.
    (arm(5000, 50), arm(5000, 150, rate=0.42), "hold", "but its error rate 3.00%, 3.0 times the champion's, above "
     "the limit of 2 (not yet significantly"),
    (arm(), arm(rate=0.30), "hold", "no significant difference yet"),
    # Per request: 720 good outcomes of 2,004 requests (4 failed) against 600 of 2,004.
    (arm(), arm(rate=0.36), "promote", "success rate per request 35.93% against the champion's 29.94%"),
    (arm(), arm(rate=0.24), "rollback", "success rate per request 23.95% against the champion's 29.94%"),
    # Failing 19 % of its requests (1.9 times the champion's 10 %, within the error guardrail) and converting 32.5 %
    # of its answers against 30.4 %: 26.4 % good outcomes per request against 27.4 %, no gain. It was promoted.
    (arm(30000, 2985, rate=0.304), arm(30000, 5670, rate=0.325), "hold", "no significant difference yet"),
])
def test_the_canary_decision_applies_guardrails_before_the_sequential_test(champion, canary, decision, said):
    outcome = canary_decision(champion, canary)
    assert outcome["decision"] == decision and said in outcome["reason"]


def test_repeated_error_guardrails_on_equal_error_rates_rarely_roll_back():
    """200 canaries erring twice as often as their champions (4 % against 2 %: the most the guardrail allows), 10 %
    of the traffic, judged after every 10 canary requests from the first, before min_requests too, up to 10,000:
    the error guardrail rolls back at most alpha of them (2 here; a fixed-size binomial test looked at as often
    rolled back 74)."""
    rng = np.random.default_rng(7)
    rolled_back = 0
    for _ in range(200):
        champion_errors = rng.binomial(90, 0.02, 1000).cumsum()
        canary_errors = rng.binomial(10, 0.04, 1000).cumsum()
        for look in range(1000):
            champion = ArmOutcomes(90 * (look + 1), int(champion_errors[look]), 20 * (look + 1), 0.05)
            canary = ArmOutcomes(10 * (look + 1), int(canary_errors[look]), 2 * (look + 1), 0.05)
            decided = canary_decision(champion, canary)
            if decided["reason"].startswith("error rate"):  # the guardrail's rollback
                rolled_back += 1
                break
    assert rolled_back <= 0.05 * 200, rolled_back


def test_repeated_latency_guardrails_on_equal_latencies_rarely_roll_back():
    """200 A/A canaries answering from one latency distribution, 1 % of it pauses of 70-130 ms (a garbage
    collection), 10 % of the traffic, judged after every 100 canary requests up to 3,000: the latency guardrail
    rolls back at most alpha of them. On the raw p99 ratio it rolled back 65 % (the A/B audit)."""
    rng = np.random.default_rng(11)

    def latencies(n: int) -> np.ndarray:
        pauses = rng.random(n) < 0.01
        return np.where(pauses, rng.uniform(0.07, 0.13, n), rng.gamma(4, 0.0004, n))

    def served(seconds: np.ndarray) -> ArmOutcomes:
        counts = tuple(int(n) for n in np.searchsorted(np.sort(seconds), LATENCY_BUCKETS, side="right"))
        return ArmOutcomes(len(seconds), 0, 0, float(np.percentile(seconds, 99)), latency_counts=counts)

    def rolled_back(canaries: int, latencies, slower: float) -> int:
        count = 0
        for _ in range(canaries):
            champion_seconds, canary_seconds = latencies(27_000), latencies(3_000) * slower
            for look in range(1, 31):
                decided = canary_decision(served(champion_seconds[:900 * look]), served(canary_seconds[:100 * look]))
                if decided["decision"] == "rollback":
                    count += 1
                    break
        return count

    assert rolled_back(200, latencies, 1.0) / 200 <= ALPHA + binomial_margin(ALPHA, 200)
    # And it finds a canary twice as slow (log-normal latencies around 4 ms): every one of 50 here, where at the
    # 2 to 2.5 times steps of the histogram's old bounds it found none.
    assert rolled_back(50, lambda n: rng.lognormal(math.log(0.004), 0.5, n), 2.0) == 50


def test_repeated_canary_decisions_on_equal_arms_rarely_act():
    """200 A/A canaries, decided after every batch of 200 requests per arm up to 4,000: the decision to act
    (promote or roll back on outcomes) is taken at most alpha of the time."""
    rng = np.random.default_rng(5)
    acted = 0
    for _ in range(200):
        successes = rng.binomial(200, 0.3, (2, 20)).cumsum(axis=1)
        for look in range(20):
            requests = 200 * (look + 1)
            champion = ArmOutcomes(requests, 0, int(successes[0, look]), 0.05)
            canary = ArmOutcomes(requests, 0, int(successes[1, look]), 0.05)
            if canary_decision(champion, canary)["decision"] != "hold":
                acted += 1
                break
    assert acted / 200 <= ALPHA + binomial_margin(ALPHA, 200)


def write_ab_logs(folder, arms: dict, seed: int) -> tuple[str, str]:
    """A prediction log and its outcomes: for each arm (requests, error rate, success rate of its answers, share
    of the answers whose outcome has arrived). Returns the two files' paths."""
    rng = np.random.default_rng(seed)
    served, arrived = [], []
    for arm_name, (requests, error_rate, success_rate, arrived_share) in arms.items():
        for n in range(requests):
            request_id = f"{arm_name}-{n}"
            failed = rng.random() < error_rate
            served.append({"request_id": request_id, "arm": arm_name, "version": arm_name, "seconds": 0.01,
                           "error": "InferenceError" if failed else None})
            if not failed and rng.random() < arrived_share:
                arrived.append({"request_id": request_id, "outcome": int(rng.random() < success_rate)})
    log, outcomes = folder / "predictions.jsonl", folder / "outcomes.jsonl"
    log.write_text("".join(json.dumps(line) + "\n" for line in served))
    outcomes.write_text("".join(json.dumps(line) + "\n" for line in arrived))
    return str(log), str(outcomes)


@pytest.mark.parametrize("canary_rate, decision", [(0.36, "promote"), (0.30, "hold")])
def test_outcomes_that_have_not_arrived_are_pending_not_failures(canary_rate, decision, tmp_path, capsys):
    """A canary starts later than its champion, so fewer of its outcomes have arrived (60 % here, all of the
    champion's). Counted as bad, the missing ones rolled back a better canary, and an equal one, at p < 0.0001."""
    log, outcomes = write_ab_logs(
        tmp_path, {"champion": (6000, 0.0, 0.30, 1.0), "canary": (6000, 0.0, canary_rate, 0.6)}, seed=11)
    assert main(["canary", "analyze", "--predictions", log, "--outcomes", outcomes,
                 "--audit-log", str(tmp_path / "audit.jsonl")]) == 0
    shown = capsys.readouterr().out
    decided = json.loads(shown[:shown.rindex("}") + 1])
    assert decided["decision"] == decision, decided["reason"]
    assert 0.3 * 6000 < decided["canary_pending"] < 0.5 * 6000 and decided["champion_pending"] == 0
    assert f"outcomes not yet arrived, left out: {decided['canary_pending']:,} of the canary's requests" in shown
    assert abs(decided["canary_success_rate"] - canary_rate) < 0.03


def test_repeated_decisions_on_equal_arms_with_failures_and_pending_outcomes_rarely_act():
    """200 A/A canaries failing 10 % of their requests like their champions, with 60 % of the canary's outcomes
    arrived at each look (all of the champion's), decided after every 300 requests per arm up to 6,000: they are
    promoted or rolled back at most alpha of the time."""
    rng = np.random.default_rng(8)
    acted = 0
    for _ in range(200):
        errors = rng.binomial(300, 0.1, (2, 20)).cumsum(axis=1)
        answered = 300 - np.diff(errors, prepend=0, axis=1)
        arrived = rng.binomial(answered, np.array([[1.0], [0.6]])).cumsum(axis=1)
        successes = rng.binomial(np.diff(arrived, prepend=0, axis=1), 0.3).cumsum(axis=1)
        for look in range(20):
            champion, canary = (ArmOutcomes(300 * (look + 1), int(errors[a, look]), int(successes[a, look]), 0.05,
                                            outcomes=int(arrived[a, look])) for a in (0, 1))
            if canary_decision(champion, canary)["decision"] != "hold":
                acted += 1
                break
    assert acted / 200 <= ALPHA + binomial_margin(ALPHA, 200)


def test_outcomes_join_the_prediction_log_by_request_id(tmp_path):
    log = tmp_path / "predictions.jsonl"
    served = [("a", "champion", None, 0.01), ("b", "champion", None, 0.03), ("c", "canary", None, 0.02),
              ("d", "canary", "BadRequest", 0.001)]
    log.write_text("".join(json.dumps({"request_id": i, "arm": arm, "error": error, "seconds": seconds}) + "\n"
                           for i, arm, error, seconds in served))
    outcomes = tmp_path / "outcomes.jsonl"
    outcomes.write_text('{"request_id": "a", "outcome": 1}\n{"request_id": "b", "outcome": 0}\n'
                        '{"request_id": "c", "outcome": 1}\n{"request_id": "zz", "outcome": 1}\n')
    arms = arms_from_logs(log, outcomes)
    def at_bounds(*seconds):  # its answers at or below each of the latency histogram's bounds
        return tuple(sum(taken <= bound for taken in seconds) for bound in LATENCY_BUCKETS)

    assert arms["champion"] == ArmOutcomes(2, 0, 1, pytest.approx(0.0298), outcomes=2,
                                           latency_counts=at_bounds(0.01, 0.03))
    # The p99 of its answers: a failure's time is not one.
    assert arms["canary"] == ArmOutcomes(2, 1, 1, 0.02, outcomes=1, latency_counts=at_bounds(0.02))
    outcomes.write_text('{"request_id": "a", "outcome": 1}\n')  # b's outcome has not arrived: pending, not bad
    champion = arms_from_logs(log, outcomes)["champion"]
    assert (champion.successes, champion.known, champion.pending) == (1, 1, 1)
    outcomes.write_text('{"request_id": "a"}\n')
    with pytest.raises(DesignError, match="line 1 is not"):
        arms_from_logs(log, outcomes)
    outcomes.write_text('{"request_id": "a", "outcome": "0"}\n')  # text is no outcome: "0" would read as true
    with pytest.raises(DesignError, match="outcome '0' of request 'a': give 1 \\(good\\) or 0"):
        arms_from_logs(log, outcomes)
    outcomes.write_text('{"request_id": "a", "outcome": 1}\n{"request_id": "a", "outcome": 0}\n')
    with pytest.raises(DesignError, match="request 'a' has two outcomes, 0 and 1: give each request one"):
        arms_from_logs(log, outcomes)
    outcomes.write_text('{"request_id": "a", "outcome": 1}\n{"request_id": "a", "outcome": 1}\n')  # sent twice
    assert arms_from_logs(log, outcomes)["champion"].successes == 1
    text = log.read_text()
    log.write_text(text + text.splitlines()[2] + "\n")  # a line written twice would count as another request
    with pytest.raises(DesignError, match="request 'c' is logged twice: the request id joins an answer to its outcome"):
        arms_from_logs(log, outcomes)
    log.write_text(text + '{"request_id": "e", "arm": "cana')  # a writer that died mid-line
    with pytest.raises(DesignError, match="line 5 is not"):
        arms_from_logs(log, outcomes)


def test_one_model_and_each_arms_newest_version_are_judged(tmp_path):
    """A server with several models writes one log; a canary replaced by a newer version leaves both in it."""
    log, outcomes = tmp_path / "predictions.jsonl", tmp_path / "outcomes.jsonl"
    served = [("churn", "champion", "A", 40), ("clv", "champion", "K", 300), ("churn", "canary", "B1", 10),
              ("churn", "canary", "B2", 20)]
    lines, good = [], []
    for model, arm, version, count in served:
        for n in range(count):
            request_id = f"{model}-{version}-{n}"
            lines.append({"request_id": request_id, "model": model, "arm": arm, "version": version, "error": None,
                          "seconds": 0.01})
            if version in ("A", "B1") and n % 4 == 0 or version in ("K", "B2") and n % 2 == 0:
                good.append({"request_id": request_id, "outcome": 1})
    log.write_text("".join(json.dumps(line) + "\n" for line in lines))
    outcomes.write_text("".join(json.dumps(line) + "\n" for line in good))
    with pytest.raises(DesignError, match="holds the answers of models churn, clv: give --name"):
        arms_from_logs(log, outcomes)
    arms = arms_from_logs(log, outcomes, "churn")
    assert (arms["champion"].version, arms["champion"].requests, arms["champion"].successes) == ("A", 40, 10)
    assert (arms["canary"].version, arms["canary"].requests, arms["canary"].successes) == ("B2", 20, 10)


def test_canary_analyze_refuses_an_unreachable_prometheus_or_a_missing_name_and_records_nothing(tmp_path, capsys):
    audit_log = tmp_path / "audit.jsonl"
    closed = f"http://127.0.0.1:{free_port()}"
    assert main(["canary", "analyze", "--prometheus", closed, "--name", "churn", "--audit-log", str(audit_log)]) == 1
    assert f"Prometheus at {closed} cannot be queried" in capsys.readouterr().err
    assert main(["canary", "analyze", "--prometheus", closed, "--audit-log", str(audit_log)]) == 1
    assert "need --name" in capsys.readouterr().err
    assert not audit_log.exists()


@pytest.mark.parametrize("option, value, said", [
    ("--min-requests", "0", "--min-requests 0: give at least 1"),  # was a ZeroDivisionError traceback
    ("--alpha", "2", "--alpha 2: give a significance level between 0 and 1"),  # rolled back a flawless canary
    ("--max-latency-ratio", "-1", "--max-latency-ratio -1: give 1 or more"),  # rolled back an equal one
    ("--max-error-ratio", "0.5", "--max-error-ratio 0.5: give 1 or more"),
    ("--tau", "nan", "--tau nan: give the smallest difference in success rate worth acting on, above 0"),
])
def test_canary_analyze_refuses_a_policy_out_of_range_as_a_usage_error(option, value, said, tmp_path, capsys):
    log, outcomes = write_ab_logs(tmp_path, {"champion": (300, 0.0, 0.3, 1.0), "canary": (300, 0.0, 0.3, 1.0)}, seed=1)
    audit_log = tmp_path / "audit.jsonl"
    with pytest.raises(SystemExit) as caught:
        main(["canary", "analyze", "--predictions", log, "--outcomes", outcomes, "--audit-log", str(audit_log),
              option, value])
    assert caught.value.code == 2
    error = capsys.readouterr().err
    assert said in error and "Traceback" not in error, error
    assert not audit_log.exists()  # no decision taken, none recorded


def test_a_canary_policy_out_of_range_is_refused_where_it_is_made():
    """The KFP component makes its policy from a dict: the same ranges hold there."""
    with pytest.raises(DesignError, match="alpha 2: give a significance level between 0 and 1"):
        CanaryPolicy(alpha=2)
    assert CanaryPolicy(max_latency_ratio=math.inf).max_latency_ratio == math.inf  # the latency guardrail off


def test_outcomes_counted_on_arrival_are_capped_at_the_requests_answered_in_the_window():
    """The champion's window also counts outcomes of requests it answered before it: 6,000 outcomes against
    2,000 requests made the test three times as sure as its data."""
    from flowline.canary import outcomes_of_answered

    assert outcomes_of_answered(2000, 1500, 450) == (1500, 450)  # some pending: as counted
    assert outcomes_of_answered(2000, 6000, 1800) == (2000, 600)  # the same rate, over the answered requests
