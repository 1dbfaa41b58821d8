"""Exports as accounting systems and banks write them, read into the engine's frame.

One module per format (quickbooks, xero, netsuite, sap, datev, camt053, mt940, ofx, bai2;
`generic` is today's CSV reader; `xlsx` reads workbooks for the table formats), each with
a `read_<format>(path) -> FrameLedger` and a `load(path, problems, options) -> Reading`.
`detect.detect_format` names a file's format from its content, `read.read_ledger_file` reads
a file in the named or detected format, and `inspect.inspect_file` says what a file will
be read as without reading it into the database.
"""
