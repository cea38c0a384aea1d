"""Fitted weights of the extractive answerer (``extractive.json``), rebuilt by ``python -m assistant.answering.fit``."""
