"""Alizé: a self-hosted platform that speaks the Mistral API on local open-weight models."""

__version__ = "0.1.0"
