"""JT/T 808 wire format: framing, header, message bodies, sub-packages. Pure, no I/O."""
