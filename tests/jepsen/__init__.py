"""Jepsen-style histories checked under faults (issue #28): ``python -m tests.jepsen.runner``.

Client processes record every operation (invoke, then ok / fail / info) while a nemesis
kills, pauses or fails over the servers; :mod:`tests.jepsen.checker` then holds the whole
history against a model. Not part of the installed package: a harness, like the suite.
"""
