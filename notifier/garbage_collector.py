"""The cyclic garbage collector, tuned for a server whose young objects die young.

At Python's default thresholds (700, 10, 10) the collector ran every 700 allocations
and rescanned the long-lived objects (config, templates, pydantic's and aiohttp's
machinery) every few runs: 12-14% of a storm's CPU. ``settle()`` freezes what exists
once the app has started (never scanned again) and collects the young generation every
50,000 allocations. ``notifier serve`` calls it; so does the benchmark's floor
(``bench/forwarder.py``), to be comparable. Only ``gc`` is imported here, so the floor
need not load the app.
"""

from __future__ import annotations

import gc

THRESHOLDS = (50_000, 20, 100)


def settle() -> None:
    """Freeze what startup built; collect the young generation less often (``THRESHOLDS``)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
