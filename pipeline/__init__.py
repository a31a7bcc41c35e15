"""Noisy-label regression to a small int8 phone model: data, teacher, TOR distillation, QAT, export."""

__version__ = "0.1.0"
