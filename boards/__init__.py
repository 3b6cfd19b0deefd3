"""Board tops, implementation flows and programming."""
