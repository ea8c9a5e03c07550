"""hie: the Mianyang health information exchange."""

__version__ = "0.1.0"
