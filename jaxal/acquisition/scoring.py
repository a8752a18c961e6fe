"""Moved to `jaxal.inference` (plain inference, used by training as well); kept so that
`jaxal.acquisition.scoring.Predictor` still imports."""

from jaxal.inference import Predictor, chunk_indices, pad_to_multiple

__all__ = ["Predictor", "chunk_indices", "pad_to_multiple"]
