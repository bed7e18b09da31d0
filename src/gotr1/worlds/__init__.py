"""Built-in worlds in which all of GoT-R1 runs for real on a CPU."""
