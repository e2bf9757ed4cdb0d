"""What a Django view uses: ``@rate_limit`` and its responses, the client's identity,
``@idempotent`` and ``get_or_set``."""
