"""Local fake upstreams: real aiohttp servers that speak the wire protocols of external services."""
