"""telltale: the composition root. Settings, CLI, and the wiring of the packages below it."""

__version__ = "0.1.0"
