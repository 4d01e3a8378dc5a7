"""Contract tests: the project judged by Intercom's own OpenAPI description and tools nobody here wrote."""
