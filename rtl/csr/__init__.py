"""Memory-mapped control: a small bus, a decoder, and registers declared as data."""
