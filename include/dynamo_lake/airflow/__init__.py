"""The Airflow-facing side: connections, the deferrable export operator and its trigger,
shared params, and task bodies (shared blocks in ``tasks``, each DAG's own in
``<dag>_tasks``).

Only this subpackage imports Airflow; it calls the core and never re-implements it.
"""
