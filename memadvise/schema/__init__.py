"""The file formats: profile, plan and baseline documents. No torch, no rich."""
