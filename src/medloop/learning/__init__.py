"""Learning from crowd labels: MONAI data, networks, training, metrics, active learning.

The only medloop package that imports torch.
"""

from medloop.learning.active import acquisition_scores, select_batch
from medloop.learning.metrics import classification_metrics
from medloop.learning.networks import NETWORKS, build_network
from medloop.learning.train import TrainConfig, TrainedClassifier, train_classifier

__all__ = [
    "NETWORKS",
    "TrainConfig",
    "TrainedClassifier",
    "acquisition_scores",
    "build_network",
    "classification_metrics",
    "select_batch",
    "train_classifier",
]
