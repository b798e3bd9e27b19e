"""Torch-free science on results tables: tidy results, Pareto frontier, power-law fits, plots.

Modules (import what you need; `plots` pulls in matplotlib and never chooses its backend):
    results    run directories / CSV / Parquet -> tidy table; `prepare` checks and cleans it
    settings   FitSettings: the choices of one fitting job (a sweep's `fit:`, fit.yaml)
    fitting    fit_study: every law of one study with its settings (the loop scaling.fit runs)
    frontier   Pareto frontier of training curves (Cmin)
    powerlaw   fits y - E = (beta x)^alpha vs N and Cmin, bootstrap intervals, hold-out
    irreducible  one E per loss, fitted jointly and shared by its laws vs N and vs Cmin
    overfit    data-limited runs (test loss risen while training loss fell)
    paper      the VAR paper's published laws as data, with their units
    plots      log-log figures in the paper's layout
    axes       grid axes of a study: laws per axis value, best value per size, seed averaging
    compare    two studies' laws compared: bootstrap bands, difference of exponents
    jointlaw   the joint law L(N, D) and its compute-optimal frontier; jointplots its figures
    synthetic  tables drawn from known laws (tests, docs, trying the CLI)
    seeds      seed replicates: averaging per size, per-size spread, two-stage bootstrap
    sample_metrics  sample quality: FID, Inception Score, precision/recall, class accuracy from
                    features; sample lines joined into the table; the columns shown
    simulate   study simulator: replay a prior law through a planned grid (scaling.plan)
    simulate_plots  the planner's figures
"""
