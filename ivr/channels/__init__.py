"""Channels translate Turns into a protocol and the caller's answers into Events."""
