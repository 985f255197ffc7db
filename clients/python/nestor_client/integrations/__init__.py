"""Adapters that let frameworks use a Nestor server through this client.

Each adapter lives in its own module and imports its framework there, so `nestor_client` itself never
needs one: `nestor_client.integrations.langchain` needs `langchain-core` (the `langchain` extra).
"""
