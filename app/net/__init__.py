"""Reaching addresses the gateway did not choose: the SSRF guard, requests pinned to the address
it checked, and a guarded fetcher. A leaf package: it imports nothing else from `app`, so every
domain that talks to such addresses (callbacks, providers) can use it."""
