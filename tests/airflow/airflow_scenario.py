"""The backfill tests' world: a tables file and a seeded table on the local AWS stack.

The tables file configures several entries over the same DynamoDB table, each with its own
lake location, so tests do not see each other's rows. Times: the table is created with the
emulator clock at T0 (two days ago); its items are written at T0+5 min, changes at
T0+1 h..1 h 30; after that the clock runs in real time again, so the PITR window is
[T0, now - lag].
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from local_aws.server import LocalAwsControl

REPO = Path(__file__).resolve().parents[2]
EXPORT_BUCKET = "it-exports"
LAKE_BUCKET = "it-lake"
DDB_TABLE = "it-orders"
NO_PITR_TABLE = "it-no-pitr"
ITEMS = 120
ALERT_TOPIC = "arn:aws:sns:us-east-1:123456789012:it-lake-drift"


@dataclass(frozen=True)
class Scenario:
    t0: datetime
    changes_from: datetime
    changes_to: datetime
    tables_file: Path
    aws: LocalAwsControl

    def client(self, service: str) -> Any:
        return self.aws.client(service, max_attempts=3)


TABLE_ENTRIES = [
    "gluefault",
    "recordfault",
    "full",
    "incremental",
    "split",
    "rerun",
    "cleared",
    "expired",
    "twice",
    "dry",
    "badtime",
    "nopitr",
    "nobucket",
    "state",
]


#: Entries the reconciliation tests check, each with its own lake, and their settings.
RECONCILE_ENTRIES: dict[str, dict[str, Any]] = {
    "rec_ok": {"method": "export"},
    "rec_drift": {"method": "export"},
    "rec_changes": {"method": "changes"},
    "rec_repair": {"method": "export", "repair": True},
    "rec_count": {"method": "count"},
    "rec_scan": {"method": "scan", "settle_margin_minutes": 0, "scan_segments": 3},
    "rec_alert": {"method": "export", "sns_topic_arn": ALERT_TOPIC},
    "rec_pointer": {"method": "export", "sns_topic_arn": ALERT_TOPIC},
    "rec_empty": {"method": "count"},  # never backfilled: no lake folder at all
    "rec_foreign": {"method": "export"},
    "rec_sweep": {"method": "export"},
    "rec_leadin": {"method": "changes"},
    "rec_state": {"method": "export"},
}


def tables_yaml() -> dict[str, Any]:
    tables: dict[str, Any] = {}
    for name in [*TABLE_ENTRIES, *RECONCILE_ENTRIES]:
        tables[name] = {
            "dynamodb_table": NO_PITR_TABLE if name == "nopitr" else DDB_TABLE,
            "export_bucket": "it-missing-bucket" if name == "nobucket" else EXPORT_BUCKET,
            "export_prefix": f"exports/{name}",
            "lake_bucket": LAKE_BUCKET,
            "glue_database": "it_shop",
            "glue_table": f"orders_{name}",
        }
        if name in RECONCILE_ENTRIES:
            tables[name]["reconcile"] = RECONCILE_ENTRIES[name]
        if name == "state":
            tables[name]["state_buckets"] = 2
        if name == "rec_state":  # its checks from the state are split into 4 buckets
            tables[name]["state_buckets"] = 4
    return {
        "defaults": {"aws_conn_id": "aws_default", "region": "us-east-1"},
        "reconciliation": {"schedule": None},
        "tables": tables,
    }
