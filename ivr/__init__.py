"""A voice-banking IVR engine: YAML dial plans run by a resumable interpreter."""

from ivr import native

__version__ = "0.1.0"

# The call's hot path runs compiled when a build matching these sources is there.
native.install()
