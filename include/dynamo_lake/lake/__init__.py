"""The lake table: writing rows (``writer``), bringing an export in (``conversion``), reading
it back (``query``), and its Glue catalog entry (``catalog``)."""
