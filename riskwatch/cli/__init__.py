"""Command-line front ends: ``riskwatch`` and its sub-commands."""
