"""The gRPC API: servicer, server, URL resolution."""
