"""harden benchmarks: `python -m bench.run` (see run.py) and `python bench/import_scale.py`."""
