"""Layer 0: the mathematics under deep learning, the datasets, and the run record.

Modules: ``linalg``, ``calculus``, ``probability``, ``numerics``, ``information`` (the maths),
``datasets`` (every dataset as numpy arrays), ``lab`` (the run record every layer writes).
"""
