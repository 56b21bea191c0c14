"""The Airflow-facing side: hooks, the deferrable export operator and its trigger, tasks.

Only this subpackage imports Airflow; it calls the core and never re-implements it.
"""
