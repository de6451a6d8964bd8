"""compiler_kit (`ckit`): float models to full-integer int8 TFLite and the Edge TPU, with measured drift."""

__version__ = "0.1.0"
