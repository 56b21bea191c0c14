"""Local AWS for development and tests: moto's server with DynamoDB exports modelled on AWS.

Development tooling only, not shipped in the production image. See README.md in this folder
for what the emulator reproduces and what it does not; it is our model of AWS, not AWS.
"""

from local_aws.clock import EmulatorClock
from local_aws.server import (
    ACCESS_KEY_ID,
    REGION,
    SECRET_ACCESS_KEY,
    LocalAws,
    LocalAwsControl,
    LocalAwsError,
    LocalAwsProcess,
    airflow_connection_uri,
    client_environment,
)
from local_aws.settings import EmulatorSettings

__all__ = [
    "ACCESS_KEY_ID",
    "REGION",
    "SECRET_ACCESS_KEY",
    "EmulatorClock",
    "EmulatorSettings",
    "LocalAws",
    "LocalAwsControl",
    "LocalAwsError",
    "LocalAwsProcess",
    "airflow_connection_uri",
    "client_environment",
]
