"""The package stays strictly typed: mypy, as configured in pyproject.toml, finds nothing."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: A cold run (no .mypy_cache) takes about 15 s on this machine; a warm one, under a second.
TIMEOUT = 300


def run_mypy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, '-m', 'mypy', *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=TIMEOUT, check=False)


def test_package_has_no_type_errors() -> None:
    result = run_mypy()
    output = result.stdout + result.stderr
    assert result.returncode == 0, f'mypy found problems:\n{output}'
    # A config that checks nothing would also exit 0: make sure every module was checked.
    checked = re.search(r'no issues found in (\d+) source files', output)
    assert checked is not None, output
    modules = list((ROOT / 'jet_sqla').rglob('*.py'))
    assert int(checked.group(1)) >= len(modules), output


def test_config_is_strict() -> None:
    # A looser config would let the first test pass on untyped code.
    config = tomllib.loads((ROOT / 'pyproject.toml').read_text())['tool']['mypy']
    assert config['strict'] is True
    assert config['packages'] == ['jet_sqla']
    for override in config.get('overrides', []):
        modules = override['module'] if isinstance(override['module'], list) else [override['module']]
        assert not [module for module in modules if module.split('.')[0] == 'jet_sqla'], override
