"""Unsupervised pretraining of backbones before active learning (ALGORITHMS.md §5)."""
