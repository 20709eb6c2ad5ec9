"""The daily close: cut-off, snapshot versions, wallet statements (camt.053, BAI2, CSV)."""
