"""adw application: the click CLI and (later) the coordinator service."""
