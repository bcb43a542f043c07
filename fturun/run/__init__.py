"""run (layer 4): one run lifecycle shared by run, check and search trials: build, wiring,
pre-load checks, checkpoints, outputs, the folder lock, stopping, timing, the report."""
