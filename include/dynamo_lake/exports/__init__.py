"""DynamoDB point-in-time exports: the API as the product uses it (``api``, light enough for
the triggerer), deciding exports (``planning``), and reading one back (``manifest``)."""
