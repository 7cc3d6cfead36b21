"""portlib's version, in a module of its own so the outputs that print it need not import
the package facade (which loads the outputs on demand: that would be an import circle)."""

__version__ = "0.1.0"
