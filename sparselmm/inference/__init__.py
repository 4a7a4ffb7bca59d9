"""Inference after the fit: tests of the fixed effects, likelihood-ratio tests, intervals, bootstrap."""
