"""Whole-curve laws (analysis.curvelaw) against curves drawn from known laws with noise."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.curvelaw import (
    Curve,
    CurveLawError,
    branch_schedule,
    features,
    fit_curves,
    forecast,
    lin_schedule,
    simulate_coverage,
    simulate_study,
    size_band,
    value_at_compute,
)


def wsd(T: int, warmup: int, cooldown: float) -> np.ndarray:
    """Warm-up, constant, then a 1-sqrt cool-down over the last `cooldown` of the steps."""
    lr = np.ones(T)
    lr[:warmup] = np.linspace(0.005, 1, warmup, endpoint=False)
    n = int(cooldown * T)
    lr[T - n :] = 1 - np.sqrt(np.linspace(0, 1, n))
    return np.maximum(lr, 0.01)


def mixed_study(law: str, shared: dict, noise: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    runs = {f"r{i}": (2 + 0.2 * i, 2.0 - 0.1 * i) for i in range(5)}
    sched = {r: wsd(800, 40, 0.2) if i % 2 else lin_schedule(800, 40) for i, r in enumerate(runs)}
    steps = {r: list(range(20, 801, 20)) for r in runs}
    return runs, sched, simulate_study(law, shared, runs, sched, steps, noise, rng)


def test_areas_by_hand():
    # lr 1, 1, 0.5, 0.5 (lr_ref 1): S1 after 4 steps = 3; one decrease of 0.5 at step 2;
    # lra with lam = 0.5: m = [0, 0, 0.5, 0.25] -> S2 after 4 steps = 0.75, after 2 = 0
    eta = np.array([1.0, 1.0, 0.5, 0.5])
    x, z = features("lra", {"alpha": 1.0, "lam": 0.5}, eta, [2, 4])
    assert x == pytest.approx([1 / 2, 1 / 3])
    assert z == pytest.approx([0.0, 0.75])
    # mpl: z(4) = d_2 * (1 - (C * eta_2^-gamma * S_2(4) + 1)^-beta), S_2(4) = 0.5 + 0.5 = 1
    x, z = features("mpl", {"alpha": 1.0, "C": 2.0, "beta": 1.0, "gamma": 1.0}, eta, [2, 4])
    assert z == pytest.approx([0.0, 0.5 * (1 - 1 / (2.0 * 2.0 * 1.0 + 1))])


def test_lra_recovers_its_own_parameters():
    truth = {"alpha": 0.45, "lam": 0.99, "c": 3e-4}
    runs, _, curves = mixed_study("lra", truth, noise=1e-3)
    fit = fit_curves(curves, "lra")
    assert fit.shared["lam"] == 0.99
    assert fit.shared["alpha"] == pytest.approx(0.45, rel=0.03)
    assert fit.shared["c"] == pytest.approx(3e-4, rel=0.05)
    for r, (L0, A) in runs.items():
        assert fit.runs[r][0] == pytest.approx(L0, abs=0.01)
        assert fit.runs[r][1] == pytest.approx(A, rel=0.02)
    assert fit.sigma == pytest.approx(1e-3, rel=0.2)


def test_mpl_recovers_its_exponent_and_curves():
    truth = {"alpha": 0.45, "C": 0.5, "beta": 0.6, "gamma": 0.5, "c": 0.3}
    runs, sched, curves = mixed_study("mpl", truth, noise=1e-3)
    fit = fit_curves(curves, "mpl")
    assert fit.shared["alpha"] == pytest.approx(0.45, rel=0.05)
    assert fit.shared["c"] == pytest.approx(0.3, rel=0.15)
    for r, (L0, _) in runs.items():
        assert fit.runs[r][0] == pytest.approx(L0, abs=0.01)
    # the whole curve of a schedule it never saw: cool-down over the last 40%
    lr = wsd(800, 40, 0.4)
    true = simulate_study(
        "mpl",
        truth,
        {"r0": runs["r0"]},
        {"r0": lr},
        {"r0": [400, 800]},
        0.0,
        np.random.default_rng(0),
    )[0].loss
    assert fit.predict("r0", lr, [400, 800]) == pytest.approx(true, abs=3e-3)


def test_forecast_from_a_prefix_is_near_the_truth_and_covers_it():
    truth = {"alpha": 0.45, "lam": 0.99, "c": 3e-4}
    runs, sched, curves = mixed_study("lra", truth, noise=2e-3, seed=3)
    target = curves[0]
    no_noise = simulate_study(
        "lra",
        truth,
        {"r0": runs["r0"]},
        {"r0": sched["r0"]},
        {"r0": [800]},
        0.0,
        np.random.default_rng(0),
    )[0].loss[0]
    f = forecast(curves[1:], target.until(200), law="lra")
    assert f.n_prefix == 10 and f.prefix_step == 200 and f.step == 800
    assert f.lo < no_noise < f.hi
    assert abs(f.value - no_noise) < 0.01


def test_interval_coverage_by_simulation():
    # 8 studies x 6 runs: each run's final from its first 25%; a 95% interval should cover
    # about 95% (binomial sd 3% at n = 48)
    res = simulate_coverage(n_studies=8, law="lra", seed=11)
    assert res["n"] == 48
    assert 0.85 <= res["coverage"] <= 1.0


def test_const_law_misses_an_annealing_it_cannot_see():
    # the schedule-blind law forecasts a cool-down's end worse than the law that knows it
    truth = {"alpha": 0.45, "lam": 0.99, "c": 3e-4}
    runs, sched, curves = mixed_study("lra", truth, noise=1e-3, seed=5)
    target = curves[1]  # a wsd run: the cool-down starts at 80%
    errs = {}
    for law in ("lra", "const"):
        f = forecast(curves[:1] + curves[2:], target.until(400), law=law, jackknife=False)
        errs[law] = abs(f.value - target.loss[-1])
    assert errs["lra"] < 0.005 < errs["const"]


def branch_study(truth: dict, noise: float, seed: int = 0, forks=(0.2, 0.3, 0.4, 0.5, 0.6)):
    """Four WSD runs of 800 steps evaluated every 40 steps of their constant phase only (no
    annealing seen), each with decay branches forked at `forks` and evaluated once, at their
    end; a branch shares its parent's (L0, A)."""
    rng = np.random.default_rng(seed)
    runs, sched, steps, family = {}, {}, {}, {}
    for i in range(4):
        r = f"r{i}"
        runs[r] = (2 + 0.2 * i, 2.0 - 0.1 * i)
        sched[r] = wsd(800, 40, 0.2)
        steps[r] = list(range(40, 641, 40))
        family[r] = r
        for at in forks:
            b = f"{r}-b{at}"
            sched[b] = branch_schedule(sched[r], round(at * 800))
            runs[b], steps[b], family[b] = runs[r], [sched[b].size], r
    drawn = simulate_study("lra", truth, runs, sched, steps, noise, rng)
    return runs, sched, [Curve(c.run, c.lr, c.steps, c.loss, family[c.run]) for c in drawn]


def test_branches_share_their_parents_L0_and_A_and_carry_the_annealing():
    # the parents are seen in their constant phase only, so the annealing coefficient c is
    # known from the branches' single evaluations after their cool-downs, through the
    # parent's (L0, A) they share
    truth = {"alpha": 0.45, "lam": 0.99, "c": 3e-4}
    runs, _, curves = branch_study(truth, noise=1e-3)
    fit = fit_curves(curves, "lra")
    assert fit.n_params == 2 * 4 + 3  # one (L0, A) per family, not per branch
    assert fit.runs["r1-b0.3"] == fit.runs["r1"]
    assert fit.shared["c"] == pytest.approx(3e-4, rel=0.2)
    assert fit.shared["alpha"] == pytest.approx(0.45, rel=0.05)
    for r in ("r0", "r1", "r2", "r3"):
        assert fit.runs[r][0] == pytest.approx(runs[r][0], abs=0.02)


def test_a_decay_branch_forecast_from_its_parents_constant_phase():
    # the end of r0's branch forked at 40%, forecast from r0's constant phase with the
    # shared parameters of the three other families: near the law's own value, inside the
    # interval; the schedule-blind law misses the cool-down it cannot see
    truth = {"alpha": 0.45, "lam": 0.99, "c": 3e-4}
    runs, sched, curves = branch_study(truth, noise=1e-3, seed=2)
    target = next(c for c in curves if c.run == "r0-b0.4")
    prefix = next(c for c in curves if c.run == "r0").until(640)
    true_end = simulate_study(
        "lra",
        truth,
        {"x": runs["r0"]},
        {"x": target.lr},
        {"x": [target.lr.size]},
        0.0,
        np.random.default_rng(0),
    )[0].loss[0]
    goal = [(target.lr, int(target.lr.size), 1.0)]
    f = forecast(curves, prefix, goal, law="lra")
    assert f.n_study == 3  # r0's own family (its branches hold its future) is left out
    assert f.lo < true_end < f.hi
    assert abs(f.value - true_end) < 0.005
    blind = forecast(curves, prefix, goal, law="const", jackknife=False)
    assert abs(blind.value - true_end) > 2 * abs(f.value - true_end)
    # the family's own curves never enter the study: adding or dropping them changes nothing
    others = [c for c in curves if c.key != "r0"]
    same = forecast(others, prefix, goal, law="lra", cache={})
    assert (same.value, same.lo, same.hi) == (f.value, f.lo, f.hi)


def test_branch_forecast_coverage_by_simulation():
    # 4 studies x 6 runs x 2 branches: a 95% interval should cover about 95% (sd 3% at n = 48)
    res = simulate_coverage(n_studies=4, law="lra", schedule="branches", seed=7)
    assert res["n"] == 48
    assert 0.85 <= res["coverage"] <= 1.0


def test_bad_curves_are_clear_errors():
    with pytest.raises(CurveLawError, match="steps must increase"):
        Curve("r", np.ones(10), np.array([5, 3]), np.array([1.0, 2.0]))
    with pytest.raises(CurveLawError, match="within 1..10"):
        Curve("r", np.ones(10), np.array([5, 11]), np.array([1.0, 2.0]))
    c = Curve("r", np.ones(10), np.array([5]), np.array([1.0]))
    with pytest.raises(CurveLawError, match="needs >= 2"):
        forecast([c], c)
    with pytest.raises(CurveLawError, match="cannot fit"):
        fit_curves([c], "lra")


def test_value_at_compute_interpolates_in_log_log():
    # y = 10 * C^-0.5 at C = 1 and 100: at C = 10 the log-log line gives 10 / sqrt(10)
    assert value_at_compute(np.array([1.0, 100.0]), np.array([10.0, 1.0]), 10.0) == pytest.approx(
        10 / np.sqrt(10)
    )
    assert value_at_compute(np.array([1.0, 100.0]), np.array([10.0, 1.0]), 1000.0) is None


def test_size_band_covers_points_of_the_same_line():
    # values at one compute falling as a + b log N with noise: a new size's value lies in
    # the 95% band about 95% of the time, and a run 10 sd off is flagged
    rng = np.random.default_rng(0)
    sizes = np.array([1e4, 3e4, 1e5, 3e5, 1e6])
    hits, n = 0, 400
    for _ in range(n):
        y = 5.0 - 0.3 * np.log(sizes) + rng.normal(0, 0.02, sizes.size)
        others = [
            (p, np.array([1.0, 10.0]), np.array([v, v])) for p, v in zip(sizes, y, strict=True)
        ]
        new = 5.0 - 0.3 * np.log(2e5) + rng.normal(0, 0.02)
        band = size_band(others, 2e5, 5.0, new)
        hits += band.verdict == "inside"
    assert 0.92 <= hits / n <= 0.98
    band = size_band(others, 2e5, 5.0, 5.0 - 0.3 * np.log(2e5) + 0.2)
    assert band.verdict == "above"
    assert not band.extrapolated  # 2e5 lies between the sizes 1e4 .. 1e6
    assert size_band(others, 3e3, 5.0, 3.0).extrapolated  # below the smallest size
    assert size_band(others[:2], 2e5, 5.0, 1.0) is None
