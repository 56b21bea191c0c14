"""dynamo_lake: DynamoDB tables into an S3 data lake, completely and provably.

The core (codec, CDC rows, export reader, lake writer) imports no Airflow; the
``dynamo_lake.airflow`` subpackage holds the operators and triggers that the DAGs use.
"""

__version__ = "0.1.0"
