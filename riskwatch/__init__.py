"""riskwatch — streaming risk monitoring and early warning for 三品一特 cross-department supervision."""

__version__ = "0.1.0"
