"""Incidents, escalation policies and acknowledgements (DESIGN §8).

``machine`` is the pure state machine; the engine that stores incidents and carries
out their effects, and the inbound acknowledgement adapters, build on it.
"""
