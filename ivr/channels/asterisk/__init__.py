"""Asterisk: FastAGI server, classic AGI and AMI."""
