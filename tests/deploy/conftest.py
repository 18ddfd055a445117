"""The deploy checks' fixtures live in fixtures.py, so `.ci/check-deploy` can load them alone."""

from tests.deploy.fixtures import compose, k8s_objects, k8s_rendered

__all__ = ["compose", "k8s_objects", "k8s_rendered"]
