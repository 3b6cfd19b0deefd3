"""The host side of the SoC: a training session over any device, and the host link's driver
over its transports (serial port, pseudo-terminal, the simulated SoC's UART)."""
