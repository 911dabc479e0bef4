"""Reports: the weekly digest's ledger reads, chart and files."""
