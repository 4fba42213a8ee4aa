"""Sources: each yields a ScanInfo and its Transients (twix, DICOM, simulator)."""
