"""Step 6: the report (JSON, Markdown, HTML) and its plots."""
