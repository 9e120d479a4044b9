"""Registers the `autoencoder` model kind (keys and a torch-free builder entry)."""
from __future__ import annotations
