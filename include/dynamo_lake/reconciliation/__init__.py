"""Reconciliation: the table against the lake's latest state as of a cut time T.

``plan`` decides T and the method; ``sql`` holds the comparison, written once; ``engines``
runs it on DuckDB or Athena; ``compare`` turns findings into counts and samples; ``repair``
writes corrective rows; ``report`` is the contract consumers read; ``run`` ties one table's
reconciliation together.
"""
