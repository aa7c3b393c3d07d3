"""Experiments: workloads (prompt sets and formats) and runners."""
