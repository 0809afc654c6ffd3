"""Doctor review: rank what the crowd and the model are unsure or disagree about."""

from medloop.review.queue import rank_for_review

__all__ = ["rank_for_review"]
