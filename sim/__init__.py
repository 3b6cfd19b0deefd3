"""Golden models, data, float references and simulation engines."""
