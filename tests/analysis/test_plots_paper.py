"""The paper's laws are drawn only where the paper measured them; the figure says where."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest

from analysis import plots, powerlaw, results
from analysis.paper import MEASURED_RANGE
from analysis.synthetic import final_points_table


def _fits(sizes):
    table = results.prepare(final_points_table(sizes, sigma=0.003, seed=0), ["ce_last"])
    return [powerlaw.fit_vs_n(table, "ce_last", irreducible="paper", bootstrap=0)]


def _paper_lines(ax):
    return [line for line in ax.get_lines() if str(line.get_label()).startswith("paper")]


@pytest.fixture(autouse=True)
def _agg():
    backend = matplotlib.get_backend()
    matplotlib.use("Agg")  # this test writes no window; the module itself chooses no backend
    yield
    matplotlib.use(backend)


def test_overlay_in_the_panel_only_over_the_measured_range():
    sizes = np.geomspace(5e6, 2e8, 5)  # 0.005-0.2 B params: meets the paper's 0.0185-2 B
    fig = plots.plot_vs_n(_fits(sizes), paper=True)
    ax = fig.axes[0]
    (line,) = _paper_lines(ax)
    x = line.get_xdata()
    assert x.min() == pytest.approx(MEASURED_RANGE["N"][0]) and x.max() <= 0.2 * 1.3 + 1e-12
    assert "(its range)" in line.get_label() and not ax.child_axes
    assert "paper's laws over their measured range" in fig._suptitle.get_text()


def test_overlay_far_from_the_data_goes_to_an_inset():
    sizes = np.geomspace(1e4, 1e6, 5)  # the demo's sizes: 3 decades below the paper's smallest
    fig = plots.plot_vs_n(_fits(sizes), paper=True)
    ax = fig.axes[0]
    assert len(ax.child_axes) == 1
    inset = ax.child_axes[0]
    x = inset.get_lines()[0].get_xdata()
    assert (x.min(), x.max()) == pytest.approx(MEASURED_RANGE["N"])
    assert "18.5M-2.0B" in inset.get_title()
    # the main panel keeps the data's range: the paper's x-range is not drawn there
    assert ax.get_xlim()[1] < 1e-2
    assert "inset" in _paper_lines(ax)[0].get_label() and "inset" in fig._suptitle.get_text()


def test_an_error_rate_band_stops_at_an_error_rate_of_one():
    """Error rates near 1 over a short N range: unclipped, the bootstrap band would reach
    1.02 at the smallest size (checked by hand); the figure stops it at 1."""
    table = final_points_table(np.geomspace(1e4, 1e5, 4), sigma=0.003, seed=0)
    table["err_last"] = [0.995, 0.93, 0.985, 0.90]
    fit = powerlaw.fit_vs_n(
        results.prepare(table, ["err_last"]), "err_last", irreducible="none", bootstrap=200
    )
    ax = plots.plot_vs_n([fit]).axes[0]
    bands = [c for c in ax.collections if "Poly" in type(c).__name__]
    assert bands
    top = max(float(np.nanmax(b.get_paths()[0].vertices[:, 1])) for b in bands)
    assert 0.99 < top <= 1.0


def test_a_wide_band_runs_off_the_frame_and_the_ticks_stay_apart():
    """Points from 0.4 to 1.3 under a band that reaches 30 (an E barely located): the y view
    stays within the points' range x 1.15 (pad (1.3 / 0.4)^0.1 = 1.125 < 1.15), not the band's
    two decades, and at least two tick labels fall in it."""
    fig, ax = matplotlib.pyplot.subplots()
    x = np.geomspace(1e-5, 1e-3, 6)
    y = np.geomspace(1.3, 0.4, 6)
    ax.fill_between(x, y / 2, np.geomspace(30, 0.5, 6))
    ax.plot(x, y, "o", label="points")
    plots._finish(ax, x, y)
    lo, hi = ax.get_ylim()
    assert lo == pytest.approx(0.4 / 1.15) and hi == pytest.approx(1.3 * 1.15)
    ticks = [t for t in ax.yaxis.get_majorticklocs() if lo <= t <= hi]
    assert len(ticks) >= 2
