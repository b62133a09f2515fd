"""Serving of exported bert4seq models through TensorFlow Serving's APIs.

* `ModelServer` (`serving.server`): in-process gRPC and REST development
  server with hot swapping of new model versions.
* `PredictionClient` (`serving.client`): gRPC client that also works against
  `tensorflow_model_server`.
* `bert4seq-serve` (`serving.serve`) and `bert4seq-recommend`
  (`serving.recommend`): command-line entry points.
"""

from serving.client import PredictionClient, PredictionError
from serving.server import ModelServer, ServerPorts

__all__ = ["ModelServer", "PredictionClient", "PredictionError", "ServerPorts"]
