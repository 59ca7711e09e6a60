"""JT/T 1078-2016: video signalling inside JT/T 808, and the media stream packets."""
