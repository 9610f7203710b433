"""fastnn's own exception types."""


class ModelFormatError(ValueError):
    """A model file is not a valid fastnn model: wrong type, truncated, corrupted or hostile."""


class TrainingDiverged(FloatingPointError):
    """The training loss became NaN or infinite."""


__all__ = ["ModelFormatError", "TrainingDiverged"]
