"""Torch-free science on results tables: tidy results, Pareto frontier, power-law fits, plots.

Modules (import what you need; `plots` pulls in matplotlib and never chooses its backend):
    results    run directories / CSV / Parquet -> tidy table; `prepare` checks and cleans it
    frontier   Pareto frontier of training curves (Cmin)
    powerlaw   fits y - E = (beta x)^alpha vs N and Cmin, bootstrap intervals, hold-out
    paper      the VAR paper's published laws as data, with their units
    plots      log-log figures in the paper's layout
    axes       grid axes of a study: laws per axis value, best value per size, seed averaging
    synthetic  tables drawn from known laws (tests, docs, trying the CLI)
    seeds      seed replicates: averaging per size, per-size spread, two-stage bootstrap
    simulate   study simulator: replay a prior law through a planned grid (scaling.plan)
    simulate_plots  the planner's figures
"""
