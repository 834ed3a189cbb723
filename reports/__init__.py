"""Situation bulletins (态势简报) rendered from ClickHouse as PDF."""
