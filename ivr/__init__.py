"""A voice-banking IVR engine: YAML dial plans run by a resumable interpreter."""

__version__ = "0.1.0"
