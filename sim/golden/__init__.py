"""Bit-exact numpy models of the gateware, one module per rtl room."""
