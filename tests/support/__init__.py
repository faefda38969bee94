"""What the tests share: the app harness, databases, fake upstreams and process helpers."""
