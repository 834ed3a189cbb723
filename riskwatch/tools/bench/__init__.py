"""Benchmarks: commands that print numbers (pipeline, Faust floor, paced load)."""
