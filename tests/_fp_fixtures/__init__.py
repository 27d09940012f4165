"""Modules the fingerprint tests copy to temp folders, rewrite and import."""
