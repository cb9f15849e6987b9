"""Optimisers, learning-rate schedules, gradient clipping and loss scaling, written out."""
