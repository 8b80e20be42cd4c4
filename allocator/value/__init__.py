"""Customer value models: what one success (acquired, retained, won-back customer) is worth."""

from .clv import TIMINGS, lifetime_value

__all__ = ["TIMINGS", "lifetime_value"]
