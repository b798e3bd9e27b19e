"""Torch-free science on results tables: tidy results, Pareto frontier, power-law fits, plots."""
