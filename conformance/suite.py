"""The conformance suite as a pytest module: the plugin collects one item per registered check here.

Run `pytest conformance/suite.py` (or `--pyargs conformance.suite`) with `--tf-*` options, or
`python -m conformance run`; this file itself holds no tests.
"""
