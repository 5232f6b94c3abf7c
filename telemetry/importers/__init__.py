"""Converters from other alerting systems' definitions to this product's rule files.

Pure: each takes the documents already parsed and returns rules and a report;
reading files and writing the rules file is the command line's work
(`telemetry import ...`). None of this is part of the function's package.
"""
