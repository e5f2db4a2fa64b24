"""The enforcement point: sniffers, shaper and subscriber classes (sans-IO), and the proxy."""
