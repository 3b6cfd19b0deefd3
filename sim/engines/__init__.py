"""Simulation engines: Amaranth's Python simulator, CXXRTL, Verilator/Icarus runners."""
