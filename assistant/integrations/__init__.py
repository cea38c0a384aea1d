"""Adapters that expose the assistant to other frameworks (each imported only when asked for)."""
