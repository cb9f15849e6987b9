"""Hyper-parameter search: an Optuna study over layer 3's Hydra pipeline, pruned and shared."""
