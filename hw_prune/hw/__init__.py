"""Hardware side: board specs, measurement backends, the simulated DPU, profiler and cost models."""
