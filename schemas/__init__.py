"""Event contracts on the wire (pydantic v2 models, JSON), and their exported JSON Schemas (``schemas/json``)."""

from schemas.events import (  # noqa: F401
    EVENT_MODELS,
    Alert,
    Complaint,
    DeadLetter,
    DisposalFeedback,
    EntityEvent,
    InspectionResult,
    SensorReading,
    VideoDetection,
)
