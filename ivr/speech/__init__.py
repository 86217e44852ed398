"""Prompts: the catalog of what the engine says, per language."""
