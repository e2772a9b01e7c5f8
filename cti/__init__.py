"""hotline-cti: the CTI server of a city 12345 government service hotline."""

__version__ = "0.1.0"
