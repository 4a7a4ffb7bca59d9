"""Reference results for regression tests."""
