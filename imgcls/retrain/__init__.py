"""Automated retraining when new data lands (imgcls retrain)."""
