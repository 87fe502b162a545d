"""The worker: claims queued uploads, runs the uploader, records the outcome."""
