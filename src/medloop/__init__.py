"""medloop: lay annotators, doctors and models labelling medical data together."""

__version__ = "0.1.0"

__all__ = ["__version__"]
