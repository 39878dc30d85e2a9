"""Batch match reports (XLSX, CSV, JSONL, HTML) for the monthly publication cycle.

selection → which needs; rows → their matches with explanations, one need at a time;
*_writer → one streaming writer per format; job → a report file from a request.
"""
