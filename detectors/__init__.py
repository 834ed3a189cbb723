"""Online risk detectors, one concept per module, River-style API (``learn_one`` / ``score_one``)."""
