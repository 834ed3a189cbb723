"""The county's domain rules: supervision catalog, routing, alert life cycle, inspection planning."""
