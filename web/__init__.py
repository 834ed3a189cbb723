"""riskwatch web: the departments' workbench and the public pages (``riskwatch web``)."""
