"""Heartbeats, the dead man's switch (DESIGN §11): ``state`` is pure, ``watch`` runs it
against the store and the timer loop, ``status`` shows it."""
