"""Package layout that pyproject.toml cannot express on its own.

The generated package `mediagen.v1` lives in gen/ (regenerated from proto/, never edited) but
installs inside the application package, so `import mediagen.v1` works from an editable install
and from a wheel alike.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["mediagen", "mediagen.*"]), "mediagen.v1"],
    package_dir={"mediagen.v1": "gen/mediagen/v1"},
)
