"""Pure builders: what Slack shows (Block Kit, wording, modals), from records and plain values."""
