"""FERVI core: settings, stream protocol, Redis helpers, vision runtime and CLI."""

__version__ = "0.1.0"
