"""JT/T 1078 signalling bodies carried in JT/T 808 frames (0x1003 … 0x9306)."""
