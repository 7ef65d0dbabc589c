"""Clients of an evledger node's HTTP API: the SDK (``services.client``) and the services built on it."""
