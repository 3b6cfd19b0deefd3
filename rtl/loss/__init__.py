"""Softmax cross-entropy loss unit."""
