"""InstantFT forward cache: 4-bit quantizer, packed cache memory, streaming dequantizer."""
