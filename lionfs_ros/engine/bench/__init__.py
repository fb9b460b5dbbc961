"""`lionfs bench`: the engine against a naive per-frame HF loop, and a long-stream memory run."""
