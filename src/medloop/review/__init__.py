"""Doctor review: rank what the crowd and the model are unsure or disagree about."""

from medloop.review.queue import model_decisions, rank_for_review

__all__ = ["model_decisions", "rank_for_review"]
