"""PeZO perturbation engine: uniform sources, Gaussian baselines, scaling, reuse banks."""
