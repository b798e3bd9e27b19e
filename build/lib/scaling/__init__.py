"""Running the study: configs, data and token store, training jobs, launching, CLIs.

Importing `scaling` is light (no torch): `python -m scaling.fit` must start fast.
"""
