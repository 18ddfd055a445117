"""Who is calling: API keys, the server interceptor that checks them, and the caller's tenant."""
