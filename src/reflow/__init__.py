"""reflow: a self-hosted engine for embedded integration workflows (Alloy API 2025-09)."""

__version__ = "0.1.0"
