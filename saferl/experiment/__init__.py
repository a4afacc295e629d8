"""The HIRL experiment: config, runs with checkpoints, the report, sweeps."""
