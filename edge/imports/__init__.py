"""Excel/CSV imports (``riskwatch import registry|complaints|inspections FILE``; the workbench's
/taskforce/imports): a county export with Chinese headers → validated events on Kafka.

- :mod:`edge.imports.layout`: the column mapping of an export layout, as data
  (``riskwatch/data/imports/<layout>.yaml``);
- :mod:`edge.imports.table`: reading the file (openpyxl read-only, or the csv module);
- :mod:`edge.imports.rows`: one row → an event, a queued event (matching) or a refusal;
- :mod:`edge.imports.run`: the whole file → Kafka (``acks=all``), dead letters and the report CSV.
"""
