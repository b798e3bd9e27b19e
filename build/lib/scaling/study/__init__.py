"""Runs -> table -> laws: the sweep file, its expansion, launching and executors, status, the
planner and the fit CLI (the fits themselves live in `analysis`).
"""
