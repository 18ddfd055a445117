"""Generated from proto/mediagen/v1 by scripts/generate_protos.py; do not edit."""
