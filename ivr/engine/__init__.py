"""The interpreter: runs a checked flow as a resumable call."""
