"""Browser runtime and the agent loop. Knows nothing of Django, HTTP or billing."""
