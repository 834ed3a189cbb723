"""Tools around the product: local broker, worker runner, demo, simulator, evaluations, benchmarks."""
