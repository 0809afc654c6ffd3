"""Learning from crowd labels: MONAI data, networks, training, metrics, active learning.

The only medloop package that imports torch.
"""

from medloop.learning.acquire import acquire, mc_dropout_proba
from medloop.learning.active import acquisition_scores, bald_scores, kcenter_greedy, select_batch
from medloop.learning.calibration import apply_temperature, choose_threshold, fit_temperature
from medloop.learning.metrics import classification_metrics
from medloop.learning.networks import NETWORKS, build_network
from medloop.learning.train import TrainConfig, TrainedClassifier, train_classifier

__all__ = [
    "NETWORKS",
    "TrainConfig",
    "TrainedClassifier",
    "acquire",
    "acquisition_scores",
    "apply_temperature",
    "bald_scores",
    "build_network",
    "choose_threshold",
    "classification_metrics",
    "fit_temperature",
    "kcenter_greedy",
    "mc_dropout_proba",
    "select_batch",
    "train_classifier",
]
