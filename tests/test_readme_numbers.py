"""Every number of the README's demo results is the one in the results file it cites.

The README's demo table and its model sizes come from docs/img/demo_fits.md, which
scripts/figures/readme_figures.py writes from one finished demo (with the runs' code, dates
and machine); docs/demo.md's sample table comes from docs/img/demo_samples.md
(scripts/figures/demo_samples.py). A README edited by hand, or a results file regenerated
without updating the README, fails here."""

from __future__ import annotations

import re

from tests.paths import ROOT


def _section(text: str, heading: str) -> str:
    """From `heading` to the next heading of any level."""
    start = text.index(heading)
    after = re.search(r"^#{1,6} ", text[start + len(heading) :], flags=re.M)
    return text[start : start + len(heading) + after.start() if after else len(text)]


def _table_rows(text: str) -> list[str]:
    return [
        line.strip()
        for line in text.splitlines()
        if line.startswith("| ") and not set(line) <= set("|- ") and "---" not in line
    ]


def test_the_readme_demo_table_is_the_committed_results_file():
    readme = _section((ROOT / "README.md").read_text(), "## What the demo shows")
    results = (ROOT / "docs" / "img" / "demo_fits.md").read_text()
    assert "docs/img/demo_fits.md" in readme  # it says where its numbers come from
    rows = _table_rows(readme)
    assert len(rows) == 9  # header + 4 metrics x (N, Cmin)
    for row in rows:
        assert row in results, f"README row not in docs/img/demo_fits.md: {row}"
    # the model sizes the README quotes: the smallest and largest run of the results file
    sizes = re.findall(r"^\| d\d \| ([\d,]+) \|", results, flags=re.M)
    assert sizes and f"{sizes[0]} to {sizes[-1]} parameters" in readme
    # and the file says where it comes from
    assert "trained by code" in results and "fitted on" in results


def test_the_readme_spread_over_seeds_is_the_committed_results_file():
    """The README quotes its demo figures as value +- spread over k pipelines (the demo run
    again with every seed changed): k, each spread and d6's final ce_avg are those of the
    results file, which names every pipeline's seeds and code."""
    readme = _section((ROOT / "README.md").read_text(), "## What the demo shows")
    results = (ROOT / "docs" / "img" / "demo_fits.md").read_text()
    k = int(re.search(r"^## Spread over (\d+) pipelines", results, flags=re.M)[1])
    assert k >= 3 and f"{k} pipelines" in readme
    spread = _section(results, f"## Spread over {k} pipelines")
    folders = [line for line in spread.splitlines() if line.startswith("| runs/")]
    assert len(folders) == k
    seeds = {re.search(r"\| (synthetic [^|]*) \|", line)[1] for line in folders}
    assert len(seeds) == k  # every pipeline has its own seeds
    quoted = re.findall(r"-?\d+\.\d+ \u00b1 \d+\.\d+(?: \(-?[\d.]+ to -?[\d.]+\))?", readme)
    assert len(quoted) >= 9  # the table's exponents and d6's final ce_avg at least
    for q in quoted:
        assert q in spread, f"README spread not in docs/img/demo_fits.md: {q}"
    d6 = re.search(r"^\| d6 \| [\d,]+ \| (-?[\d.]+ \u00b1 [\d.]+)", spread, flags=re.M)
    assert d6 and f"d6's final ce_avg is {d6[1]}" in readme


def test_the_demo_page_sample_table_is_the_committed_results_file():
    page = _section((ROOT / "docs" / "demo.md").read_text(), "### Sample quality")
    results = (ROOT / "docs" / "img" / "demo_samples.md").read_text()
    rows = _table_rows(page)
    assert len(rows) >= 3
    for row in rows:
        assert row in results, f"docs/demo.md row not in docs/img/demo_samples.md: {row}"


def test_the_lr_demo_numbers_are_the_committed_results_file():
    """docs/studies.md's lr-study tables are rows of docs/img/demo_lr_fits.md
    (scripts/figures/readme_figures.py runs/demo_lr), and so are the final values it cites."""
    page = _section((ROOT / "docs" / "studies.md").read_text(), "## A second axis: the learning")
    results = (ROOT / "docs" / "img" / "demo_lr_fits.md").read_text()
    assert "img/demo_lr_fits.md" in page and "trained by code" in results
    rows = _table_rows(page)
    assert len(rows) >= 6  # both views' headers and the ce_avg and ce_last laws at least
    for row in rows:
        assert row in results, f"docs/studies.md row not in docs/img/demo_lr_fits.md: {row}"
    # "final ce_avg A vs B at dK": A at 0.048 and B at 0.024, as the best-lr table has them
    cited = re.findall(r"(\d\.\d{4}) vs (\d\.\d{4})\s+at (d\d)", page)
    assert cited
    for at_048, at_024, depth in cited:
        row = re.search(rf"^\| ce_avg \| [\d,]+ \| [\d.]+ \| {depth}-lr[\d.]+ \|.*$", results, re.M)
        assert row, depth
        picked = re.search(rf"{depth}-lr([\d.]+) \| ([\d.]+) \| (0\.0\d+): ([\d.]+) \|$", row[0])
        values = {picked[1]: picked[2], picked[3]: picked[4]}
        assert (values["0.048"], values["0.024"]) == (at_048, at_024), (depth, values)


def test_the_wsd_demo_numbers_are_the_committed_results_file():
    """docs/studies.md's WSD table rows, compute model and --optimal-for answer are those of
    docs/img/demo_wsd_fits.md (scripts/figures/readme_figures.py runs/demo_wsd --optimal-for)."""
    page = _section((ROOT / "docs" / "studies.md").read_text(), "## Second demo: WSD runs")
    results = (ROOT / "docs" / "img" / "demo_wsd_fits.md").read_text()
    assert "img/demo_wsd_fits.md" in page
    rows = _table_rows(page)
    assert len(rows) == 3  # header + ce_avg + ce_last
    for row in rows:
        assert row in results, f"docs/studies.md row not in docs/img/demo_wsd_fits.md: {row}"
    model = re.search(r"C = ([\d.]+) N\^([\d.]+) D \(tokens\)\s+to within ([\d.]+)%", page)
    assert model, "docs/studies.md no longer states the compute model"
    assert f"C = {model[1]} N^{model[2]} D (tokens), exact FLOPs, to within {model[3]}%" in results
    # the --optimal-for answer, rounded to 2 significant digits in the page
    answer = re.search(r"N\* = ([\d.e+]+) parameters\s+\[([\d.e+]+), ([\d.e+]+)\]", page)
    stored = re.search(r"N\* = ([\d.e+]+) parameters\s+\[([\d.e+]+), ([\d.e+]+)\]", results)
    assert answer and stored
    for quoted, exact in zip(answer.groups(), stored.groups()):
        assert f"{float(exact):.1e}".replace("e+0", "e") == quoted, (quoted, exact)


def test_the_data_demo_numbers_are_the_committed_results_file():
    """The README's and docs/studies.md's R* and V* of sweeps/demo_data.yaml are those of
    docs/img/demo_data_fits.md (scripts/figures/demo_data_figures.py), in the right fit."""
    results = (ROOT / "docs" / "img" / "demo_data_fits.md").read_text()
    every = _section(results, "## The fit on every run")
    early = _section(results, "## The fit before the rise")

    def quoted(section: str, metric: str, name: str) -> str:
        found = re.search(rf"^- {metric}: {re.escape(name)} = (.+)$", section, flags=re.M)
        assert found, f"{name} of {metric} not in the results file"
        return found[1]

    readme = (ROOT / "README.md").read_text()
    assert "docs/img/demo_data_fits.md" in readme
    assert f"while a repeat still helps R* = {quoted(early, 'ce_avg', 'R*')}" in readme
    assert f"fitted on every run, R* = {quoted(every, 'ce_avg', 'R*')}" in readme
    page = _section((ROOT / "docs" / "studies.md").read_text(), "## Repeated images")
    assert "img/demo_data_fits.md" in page
    rows = _table_rows(page)
    assert len(rows) == 3  # header + the two fits
    for row, section in ((rows[1], early), (rows[2], every)):
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[2] == quoted(section, "ce_avg", "R*")
        assert cells[3] == quoted(section, "ce_avg", "V*")
        residual = re.search(r"^\| ce_avg \|.*\| ([\d.]+) \|$", section, flags=re.M)
        assert residual and cells[4] == residual[1]
    assert f"ce_last: {quoted(early, 'ce_last', 'R*')}" in page
    assert "trained by code" in results and "wall clock" in results


def test_the_readme_forecast_tables_are_the_committed_backtests_file():
    """The README's backtest rows (both demos) are rows of docs/img/backtests.md, which
    scripts/figures/backtest_tables.py writes from `fit --set backtest=true` on each demo."""
    readme = _section((ROOT / "README.md").read_text(), "## How well do the laws forecast?")
    results = (ROOT / "docs" / "img" / "backtests.md").read_text()
    assert "docs/img/backtests.md" in readme
    rows = _table_rows(readme)
    studies = {row.split("|")[1].strip() for row in rows}
    assert {"demo", "demo_wsd"} <= studies  # both demos are quoted
    for row in rows:
        assert row in results, f"README row not in docs/img/backtests.md: {row}"
    assert results.count("trained by code") == 2 and "backtested" in results


def test_the_tokenizer_study_numbers_are_the_committed_results_file():
    """docs/studies.md's tokenizer-study tables and the README's line on it are those of
    docs/img/demo_tokenizers.md (scripts/figures/demo_tokenizers.py runs/demo_tokenizers)."""
    page = _section((ROOT / "docs" / "studies.md").read_text(), "### The laptop study")
    results = (ROOT / "docs" / "img" / "demo_tokenizers.md").read_text()
    assert "img/demo_tokenizers.md" in page
    rows = _table_rows(page)
    assert len(rows) >= 8
    for row in rows:
        assert row in results, f"docs/studies.md row not in docs/img/demo_tokenizers.md: {row}"
    readme = _section((ROOT / "README.md").read_text(), "## More studies")
    assert "docs/img/demo_tokenizers.md" in readme
    quoted = [q for q in re.findall(r"`([^`]*)`", readme) if "->" in q or q.startswith("[")]
    assert len(quoted) >= 2, "the README no longer quotes the tokenizer study's crossover"
    for q in quoted:
        assert q in results, f"README quote not in docs/img/demo_tokenizers.md: {q}"
