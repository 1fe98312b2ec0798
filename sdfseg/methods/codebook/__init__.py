"""Unified-Lift's object codebook (``train.method: codebook``): the method (``method.py``) and its
losses: area-aware ID mapping, concentration, noisy-label filter (``losses.py``)."""
