"""The CloudFormation stack: what cfn-lint cannot check (Glue table, projection, prefixes, IAM).

cfn-lint itself runs in `make lint` (part of `make test`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from dynamo_lake.contract import partition_of
from dynamo_lake.firehose_lambda import partition_keys
from dynamo_lake.lake.catalog import glue_table_input

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "include" / "cloudformation" / "dynamo-lake-stream.yaml"
PARAMETERS = {
    "TableName": "orders-prod",
    "LakeBucketName": "acme-lake",
    "LakePrefix": "dynamo-cdc",
    "DatabaseName": "shop",
    "GlueTableName": "orders",
    "BackupPrefix": "dynamo-cdc-backup",
    "ErrorsPrefix": "dynamo-cdc-errors",
    "ExportBucketName": "acme-exports",
    "ExportPrefix": "dynamodb-exports",
    "AthenaResultsPrefix": "athena-results",
    "AthenaWorkGroup": "primary",
    "AWS::AccountId": "123456789012",
    "AWS::Region": "eu-west-1",
    "AWS::Partition": "aws",
    "AWS::StackName": "lake",
}


class _Tag:
    def __init__(self, name: str, value: Any) -> None:
        self.name, self.value = name, value


class _CfnLoader(yaml.SafeLoader):
    pass


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> _Tag:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return _Tag(suffix, value)


_CfnLoader.add_multi_constructor("!", _tag)


def _sub(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.startswith("!"):
            return "${" + name[1:] + "}"  # ${!x} is a literal ${x}
        if name in PARAMETERS:
            return PARAMETERS[name]
        return f"<{name}>"  # an attribute (Resource.Arn), left symbolic

    return re.sub(r"\$\{([^}]+)\}", replace, text)


def resolve(value: Any) -> Any:
    """Substitute parameters into !Ref and !Sub; other intrinsics stay symbolic."""
    if isinstance(value, _Tag):
        if value.name == "Ref":
            return PARAMETERS.get(value.value, f"<Ref {value.value}>")
        if value.name == "Sub":
            return _sub(value.value)
        return value
    if isinstance(value, dict):
        return {key: resolve(item) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve(item) for item in value]
    return value


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load(TEMPLATE.read_text(), Loader=_CfnLoader)
    return loaded


def resource(template: dict[str, Any], name: str) -> dict[str, Any]:
    properties: dict[str, Any] = resolve(template["Resources"][name]["Properties"])
    return properties


def test_the_glue_table_equals_the_catalog_definition(template: dict[str, Any]) -> None:
    glue = resource(template, "GlueTable")
    assert glue["DatabaseName"] == "<Ref GlueDatabase>"
    location = "s3://acme-lake/dynamo-cdc/shop/orders/"
    assert glue["TableInput"] == glue_table_input("orders", location)


def test_partition_projection_finds_the_files_the_writers_write(template: dict[str, Any]) -> None:
    parameters = resource(template, "GlueTable")["TableInput"]["Parameters"]
    assert parameters["projection.enabled"] == "true"
    assert parameters["storage.location.template"] == (
        "s3://acme-lake/dynamo-cdc/shop/orders/year=${year}/month=${month}/day=${day}"
    )
    for micros in (1_649_719_712_473_000, 1_704_067_199_999_999, 1_330_473_600_000_000):
        keys = partition_keys(micros)
        for name, value in keys.items():
            low, high = (int(v) for v in parameters[f"projection.{name}.range"].split(","))
            assert parameters[f"projection.{name}.type"] == "integer"
            assert low <= int(value) <= high
            assert len(value) == int(parameters[f"projection.{name}.digits"])
        projected = parameters["storage.location.template"].replace("${year}", keys["year"])
        projected = projected.replace("${month}", keys["month"]).replace("${day}", keys["day"])
        # The backfill's writer and the stream's Lambda agree on the partition folder.
        assert projected == f"s3://acme-lake/dynamo-cdc/shop/orders/{partition_of(micros)}"


def test_firehose_partitions_by_the_rows_time_stamp_into_the_lake_table(
    template: dict[str, Any],
) -> None:
    destination = resource(template, "DeliveryStream")["ExtendedS3DestinationConfiguration"]
    prefix = destination["Prefix"]
    keys = partition_keys(1_649_719_712_473_000)
    rendered = re.sub(r"!\{partitionKeyFromLambda:(\w+)\}", lambda m: keys[m.group(1)], prefix)
    glue = resource(template, "GlueTable")["TableInput"]["StorageDescriptor"]
    assert (
        f"s3://acme-lake/{rendered}" == glue["Location"] + partition_of(1_649_719_712_473_000) + "/"
    )
    assert destination["DynamicPartitioningConfiguration"]["Enabled"] is True
    assert destination["ErrorOutputPrefix"].startswith("dynamo-cdc-errors/shop/orders/")
    assert "!{firehose:error-output-type}" in destination["ErrorOutputPrefix"]
    backup = destination["S3BackupConfiguration"]
    assert destination["S3BackupMode"] == "Enabled"
    assert backup["Prefix"].startswith("dynamo-cdc-backup/shop/orders/")
    text = TEMPLATE.read_text()
    assert "timestamp:YYYY" not in text  # week-based year, the seed's bug
    conversion = destination["DataFormatConversionConfiguration"]
    assert "OpenXJsonSerDe" in conversion["InputFormatConfiguration"]["Deserializer"]
    assert conversion["SchemaConfiguration"]["TableName"] == "orders"
    processors = destination["ProcessingConfiguration"]["Processors"]
    (lambda_processor,) = processors
    parameters = {p["ParameterName"]: p["ParameterValue"] for p in lambda_processor["Parameters"]}
    assert float(parameters["BufferSizeInMBs"]) <= 3  # the response stays under 6 MB
    assert destination["BufferingHints"]["SizeInMBs"] >= 64


def test_the_table_streams_microseconds_into_the_encrypted_stream_with_pitr(
    template: dict[str, Any],
) -> None:
    table = resource(template, "Table")
    assert table["KinesisStreamSpecification"]["ApproximateCreationDateTimePrecision"] == (
        "MICROSECOND"
    )
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert resource(template, "ChangeStream")["StreamEncryption"]["EncryptionType"] == "KMS"
    function = resource(template, "TransformFunction")
    assert function["Handler"] == "dynamo_lake.firehose_lambda.handler"
    assert function["Runtime"] == "python3.11"
    assert function["Environment"]["Variables"]["SOURCE_TABLE_NAME"] == "orders-prod"


def _statements(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for name, body in template["Resources"].items():
        properties = resolve(body.get("Properties", {}))
        documents = [p["PolicyDocument"] for p in properties.get("Policies", [])]
        if body["Type"] == "AWS::IAM::ManagedPolicy":
            documents.append(properties["PolicyDocument"])
        for document in documents:
            found.extend((name, statement) for statement in document["Statement"])
    return found


def test_iam_is_least_privilege(template: dict[str, Any]) -> None:
    statements = _statements(template)
    assert {name for name, _ in statements} == {
        "TransformRole",
        "DeliveryRole",
        "AirflowPolicy",
    }
    for name, statement in statements:
        actions = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        resources = (
            statement["Resource"]
            if isinstance(statement["Resource"], list)
            else [statement["Resource"]]
        )
        assert statement["Effect"] == "Allow"
        assert not any(action.endswith("*") for action in actions), (name, actions)
        if "*" in resources:
            assert actions == ["dynamodb:ListExports"], (name, actions)
        for arn in resources:
            if isinstance(arn, str) and arn.startswith("arn:aws:s3:::") and "/" in arn:
                key = arn.split("/", 1)[1]
                assert key.endswith("/*") and key.count("/") >= 1, arn
    delivery_objects = next(
        s for n, s in statements if n == "DeliveryRole" and "s3:PutObject" in s["Action"]
    )
    assert sorted(delivery_objects["Resource"]) == [
        "arn:aws:s3:::acme-lake/dynamo-cdc-backup/shop/orders/*",
        "arn:aws:s3:::acme-lake/dynamo-cdc-errors/shop/orders/*",
        "arn:aws:s3:::acme-lake/dynamo-cdc/shop/orders/*",
    ]
    delivery_actions = {a for n, s in statements if n == "DeliveryRole" for a in s["Action"]}
    assert not any(
        a.startswith(("s3:Delete", "dynamodb:", "glue:Update")) for a in delivery_actions
    )
    airflow_actions = {a for n, s in statements if n == "AirflowPolicy" for a in s["Action"]}
    assert "dynamodb:PutItem" not in airflow_actions  # the repair writes the lake, not the table
    assert {"dynamodb:ExportTableToPointInTime", "athena:StartQueryExecution"} <= airflow_actions
