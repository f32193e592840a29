from __future__ import annotations

import pytest
from plugin_helpers import write_ini

# Imported here, before any in-process pytester run: a run restores sys.modules afterwards, and
# cryptography (under trustme) first imported inside one and then again inside another has two
# copies of its classes ("curve must be an EllipticCurve instance").
import freshtoken.fakes  # noqa: F401


@pytest.fixture
def downstream(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester project in auto mode."""
    write_ini(pytester)
    return pytester
