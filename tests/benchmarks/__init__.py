"""`make bench`: the gateway's overhead, capacity and memory, measured against a fast fake upstream.

A script (`python -m tests.benchmarks.run`), not a test suite: no module here is named `test_*`,
so pytest never collects it. Results and the machine they came from are in `RESULTS.md`.
"""
