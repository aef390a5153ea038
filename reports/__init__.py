"""Comparison reports (PDF, Markdown, CSV) built from sweep or attack results; reads results files only.

Importing this package is cheap: no torch, and matplotlib loads only when a report is built.
"""

from reports.build import ReportResult, build_report
from reports.results import ResultsSet, load_results

__all__ = ["ReportResult", "ResultsSet", "build_report", "load_results"]
