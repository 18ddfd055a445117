"""mediagen: asynchronous media generation over gRPC and JSON/HTTP."""
