"""Tokens -> runs: the run config, schedules, evaluation, the trainer and its job, samples of a
trained run. Imports scaling.core and scaling.data (never study).
"""
