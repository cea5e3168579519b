"""dkos: a self-hosted container cloud."""

__version__ = "0.1.0"
