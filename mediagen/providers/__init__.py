"""Model providers: the seam (:mod:`.base`) and its Replicate implementation (:mod:`.replicate`).

The Replicate client is imported only by :mod:`mediagen.providers.replicate`, so code that needs
just the seam's types stays light.
"""

from mediagen.providers.base import Prediction, PredictionStatus, Provider, ProviderError

__all__ = ["Prediction", "PredictionStatus", "Provider", "ProviderError"]
