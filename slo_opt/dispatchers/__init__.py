"""Edge-cloud dispatchers (site choice per request)."""
