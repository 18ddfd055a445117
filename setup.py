"""Package layout that pyproject.toml cannot express on its own.

Two folders at the top of the repository install inside the application package: gen/
(generated from proto/, never edited) as `mediagen.v1`, and migrations/ (Alembic) as
`mediagen.migrations`, so `import mediagen.v1` and `mediagen migrate` work from an editable
install and from a wheel alike.
"""

from setuptools import find_packages, setup

setup(
    packages=[
        *find_packages(include=["mediagen", "mediagen.*"]),
        "mediagen.v1",
        "mediagen.migrations",
        "mediagen.migrations.versions",
    ],
    package_dir={
        "mediagen.v1": "gen/mediagen/v1",
        "mediagen.migrations": "migrations",
        "mediagen.migrations.versions": "migrations/versions",
    },
)
