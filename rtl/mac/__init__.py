"""Adapter MAC array and adapter weight memory."""
