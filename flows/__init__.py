"""Prefect flows: the RARL pipeline's stages composed top to bottom, each one a task with its logs in the UI."""
