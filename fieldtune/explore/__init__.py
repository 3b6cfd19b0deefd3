"""Design-space exploration (``fieldtune explore``): which configuration to put on a board.

A *space* (:mod:`.space`, TOML) names a base design, fields with lists of values or ranges,
and objectives. Every point is validated, implemented (resources, post-route Fmax, fits;
cached by design hash), run on R1 with the golden engine for accuracy and cycles, and given
a projected fine-tuning time (:mod:`.point`); the points run on a Dask cluster
(:mod:`fieldtune.executor`, :mod:`.sweep`) and their Pareto front (:mod:`.pareto`) is shown as
a table, JSON and a plot (:mod:`.report`). See docs/explore.md.
"""
