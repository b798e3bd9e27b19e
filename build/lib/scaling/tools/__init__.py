"""Tools beside the data flow (benchmarks). May import any layer."""
