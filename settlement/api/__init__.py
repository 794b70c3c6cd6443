"""The settlement service's HTTP API (`service`), its client for terminals (`client`) and terminal keys (`auth`)."""
