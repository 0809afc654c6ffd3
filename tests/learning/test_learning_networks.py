"""Networks build by name, map (B, C, H, W) to logits, and reject bad options."""

from __future__ import annotations

import pytest
import torch

from medloop.exceptions import InvalidInputError, UnknownOptionError
from medloop.learning.networks import NETWORKS, build_network, last_linear


@pytest.mark.parametrize("name", [n for n in NETWORKS if n != "densenet121"])
@pytest.mark.parametrize("channels", [1, 3])
def test_networks_give_logits_per_class(name: str, channels: int) -> None:
    torch.manual_seed(0)
    net = build_network(name, in_channels=channels, n_classes=3).eval()
    with torch.no_grad():
        out = net(torch.rand(2, channels, 28, 28))
    assert out.shape == (2, 3)
    assert last_linear(net).out_features == 3


def test_dropout_is_applied_before_the_last_layer() -> None:
    net = build_network("resnet10", in_channels=1, n_classes=2, dropout=0.5)
    assert any(isinstance(m, torch.nn.Dropout) for m in net.modules())


def test_unknown_network_suggests_a_name() -> None:
    with pytest.raises(UnknownOptionError, match="resnet18"):
        build_network("resnet81", in_channels=1, n_classes=2)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"in_channels": 0, "n_classes": 2},
        {"in_channels": 1, "n_classes": 1},
        {"in_channels": 1, "n_classes": 2, "dropout": 1.0},
    ],
)
def test_bad_sizes_raise(kwargs: dict[str, float]) -> None:
    with pytest.raises(InvalidInputError):
        build_network("cnn", **kwargs)  # type: ignore[arg-type]
