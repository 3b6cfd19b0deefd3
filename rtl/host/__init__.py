"""The host link: UART, COBS framing with CRC-16, and a command decoder that is the SoC bus's
initiator. The wire protocol is :mod:`fieldtune.rtl.host.protocol` (plain data)."""
