"""Persistence: tables, migrations, repositories. The only place that speaks SQL."""
