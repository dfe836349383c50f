"""Anomaly detection around the models: benign scan sources, scan scoring, reference mode."""
