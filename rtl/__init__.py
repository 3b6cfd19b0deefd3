"""fieldtune gateware (Amaranth 0.5). Imports nothing of fieldtune's but itself."""
