"""dynamo_lake: DynamoDB tables into an S3 data lake, completely and provably.

The core imports no Airflow: the lake contract (``contract``), errors, the item codec and
CDC rows (``codec``, ``cdc``), stores (``storage``), the tables file (``config``), typed
records (``records``), exports (``exports``), the lake table (``lake``), the backfill
(``backfill``), the Firehose Lambda (``firehose_lambda``) and the command line (``cli``).
``dynamo_lake.airflow`` holds the operator, the trigger and the task bodies the DAGs use.
"""

__version__ = "0.1.0"
