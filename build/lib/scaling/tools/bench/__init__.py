"""`python -m scaling.bench`: throughput, memory and correctness of the trainer on one device."""
