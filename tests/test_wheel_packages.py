"""Every package of the source tree is listed for the wheel, so what the checkout imports a wheel imports too."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_directory_is_in_the_wheel() -> None:
    setuptools = tomllib.loads((ROOT / 'pyproject.toml').read_text())['tool']['setuptools']
    listed = set(setuptools['packages'])
    # Source directories and the package names they ship under (package-dir maps two of them).
    roots = {'jet_sqla': ROOT / 'jet_sqla'}
    roots.update({name: ROOT / directory for name, directory in setuptools['package-dir'].items()})
    found = set()
    for name, directory in roots.items():
        for init in directory.rglob('__init__.py'):
            relative = init.parent.relative_to(directory)
            found.add('.'.join([name, *relative.parts]))
    assert found - listed == set(), 'add these to [tool.setuptools] packages'
    assert {'jet_sqla.integrations', 'jet_sqla.examples.flask_library', 'jet_sqla.examples.fastapi_heroes'} <= found
