"""Quantizers: map float updates to integers and back."""
