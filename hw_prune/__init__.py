"""hw_prune: latency-targeted channel pruning of CNNs for FPGA edge boards."""

__version__ = "0.1.0"
