"""Edges of a node: transport, HTTP, configuration."""
