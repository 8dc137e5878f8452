"""The benchmark harness of issue 5 (outside the test suite): ``bench/run`` or ``python -m bench``."""
