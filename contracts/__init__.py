"""Stage contracts: the files that cross stages, each with one typed reader/writer pair.

Torch-free: standard library and PyYAML only, no torch and nothing else of this
project, so `scaling` (which writes the files) and `analysis` (which reads them) share one
reader each.

    metrics.py  <run>/metrics.jsonl  one `MetricsRecord` per evaluation; the metric names
    status.py   <run>/status.json    `RunStatus`: the run's state and its bookkeeping
    grid.py     <output>/grid.yaml   `GridFile`: a sweep's axes and every run's axis values
    fits.py     <fit>/fits.json      `FitsFile`: the laws a fit wrote (read back by the planner)
    draws.py    <fit-nd>/draws.json  `DrawsFile`: the joint law's bootstrap refits
    optimal.py  <optimal-C>/optimal.json  `OptimalFile`: N*, D* for a budget
    compare.py  <compare>/compare.json    `CompareFile`: two studies' exponents compared
    plan.py     <output>/plan/plan.json   `PlanFile`: a study plan's costs and precision
    rank_errors.py  <run>/rank_errors/rank<k>.json  `RankError`: why a rank failed
    tokenizer.py, jsonl.py, jsondoc.py (the JSON checks shared), errors.py
    atomic.py                        atomic writes and the append-only JSONL log under them

Every file written carries ``schema_version`` (`SCHEMA_VERSION` of its module); a file
without one is version 0 (written before the contracts) and reads the same. One error policy
for all: a file that cannot be read as its contract says raises `ContractError` naming the
file (and the line, for line-based files); only the torn last line of an append-only file
(a write cut short by a crash) is skipped, with a `ContractWarning`.
"""

from contracts.errors import ContractError, ContractWarning

__all__ = ["ContractError", "ContractWarning"]
