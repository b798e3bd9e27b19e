"""Shared ground of every stage: atomic writes, typed YAML configs with located errors, the run
directory, locks, provenance, the runtime policy, tracking. Imports nothing else of scaling.
"""
