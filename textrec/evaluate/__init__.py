"""Evaluation: full-catalogue ranking of evaluation events (one ranking kernel), metrics and paired statistics."""
