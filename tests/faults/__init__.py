"""Fault injection (issue #11): restarts, LOADING, OOM, BUSY, kill -9, a faulty network.

Every test here is marked ``faults``; the multi-process ones also ``slow``.
``python -m tests.faults.report`` runs them and prints the table of docs/reliability.md.
"""
